"""The checkout's top-level ``datasets/`` (worldmot.datasets) must not shadow Hugging Face's ``datasets`` for a
Python started in the checkout's root (a script, a notebook, LeRobot's loader)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def run_in_checkout(code: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-c", code], cwd=CHECKOUT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_datasets_in_the_checkout_root_gets_the_other_package(tmp_path):
    other = tmp_path / "site" / "datasets"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("def load_dataset(name):\n    return 'hub:' + name\n")
    out = run_in_checkout("import datasets, worldmot.datasets as ours\n"
                          "print(datasets.__file__)\nprint(datasets.load_dataset('pusht'))\n"
                          "print(ours.LeRobotWriter.__module__)", pythonpath=tmp_path / "site")
    assert out.returncode == 0, out.stderr
    file, loaded, ours = out.stdout.split()
    assert Path(file) == other / "__init__.py"
    assert loaded == "hub:pusht"
    assert ours == "worldmot.datasets.writer"


def test_without_the_other_package_one_clear_import_error():
    out = run_in_checkout("import datasets")
    if out.returncode == 0 and "site-packages" in run_in_checkout("import datasets; print(datasets.__file__)").stdout:
        return  # Hugging Face's datasets is installed here: the redirect test above covers this machine
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "worldmot.datasets" in last and "Hugging Face" in last
