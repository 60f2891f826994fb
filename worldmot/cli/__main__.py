import sys

from worldmot.cli import main

sys.exit(main())
