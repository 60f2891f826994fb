"""``worldmot train [CONFIG] [key=value ...] [--resume]``; also under ``torchrun -m worldmot train``."""
from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", metavar="[CONFIG] key=value",
                        help="a YAML file or a name in configs/train/ (default: tiny), then overrides such as "
                             "data.root=DIR run_dir=DIR model=tiny steps=2000")
    parser.add_argument("--resume", action="store_true", help="continue the run in run_dir from its newest checkpoint")


def main(args: argparse.Namespace) -> int:
    from worldmot.training.loop import train
    from worldmot.training.settings import load_train_config

    cfg = load_train_config(args.args)
    run = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"trained: {run}  (model: {run / 'model'}, curves: {run / 'curves.png'})")
    return 0
