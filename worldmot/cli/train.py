"""``worldmot train [CONFIG] [key=value ...] [--resume]``; also under ``torchrun -m worldmot train``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from worldmot.config import config_dir, load_config
from worldmot.errors import WorldmotError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", metavar="[CONFIG] key=value",
                        help="a YAML file or a name in configs/train/ (default: tiny), then overrides such as "
                             "data.root=DIR run_dir=DIR model=tiny steps=2000")
    parser.add_argument("--resume", action="store_true", help="continue the run in run_dir from its newest checkpoint")


def resolve_config_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise WorldmotError(f"{path}: config file not found")
        return path
    builtin = config_dir() / "train" / f"{name}.yaml"
    if not builtin.exists():
        choices = sorted(p.stem for p in (config_dir() / "train").glob("*.yaml"))
        raise WorldmotError(f"train config {name!r}: not a file and not one of {choices}")
    return builtin


def parse(args: list[str]):
    from worldmot.training.config import TrainConfig

    positional = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(positional) > 1:
        raise WorldmotError(f"expected one CONFIG and key=value overrides, got {positional}")
    config = resolve_config_file(positional[0] if positional else "tiny")
    return load_config(TrainConfig, files=[config], overrides=overrides)


def main(args: argparse.Namespace) -> int:
    from worldmot.training.loop import train

    cfg = parse(args.args)
    run = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"trained: {run}  (model: {run / 'model'}, curves: {run / 'curves.png'})")
    return 0
