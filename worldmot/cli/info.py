"""``worldmot info``: what is installed and which built-in configs exist."""
from __future__ import annotations

import argparse

import torch

import worldmot
from worldmot.config import config_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def main(args: argparse.Namespace) -> int:
    del args
    print(f"worldmot {worldmot.__version__}  torch {torch.__version__}  threads {torch.get_num_threads()}"
          f"  cuda {torch.cuda.is_available()}")
    for group in sorted(p for p in config_dir().iterdir() if p.is_dir() and not p.name.startswith("_")):
        print(f"{group.name}: {', '.join(sorted(f.stem for f in group.glob('*.yaml')))}")
    return 0
