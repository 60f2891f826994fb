"""``worldmot train [CONFIG] [key=value ...] [--resume]``; also under ``torchrun -m worldmot train``."""
from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", metavar="[CONFIG] key=value",
                        help="a YAML file or a name in configs/train/ (default: tiny), then overrides such as "
                             "data.root=DIR run_dir=DIR model=tiny steps=2000")
    parser.add_argument("--resume", action="store_true", help="continue the run in run_dir from its newest checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = key_reference()


def key_reference() -> str:
    """Every key with the value a run gets when it sets nothing (configs/train/tiny.yaml) and its meaning."""
    from worldmot.config import config_dir, merge_config, named_config
    from worldmot.config_reference import reference_text
    from worldmot.training.config import TrainConfig

    def names(group: str) -> str:
        return ", ".join(sorted(p.stem for p in (config_dir() / group).glob("*.yaml")))

    conf = merge_config(TrainConfig, [named_config("train", "tiny")])
    return (f"CONFIG: {names('train')} or a YAML file; config group: model=NAME ({names('model')})\n"
            f"keys (key=value; ??? = required):\n{reference_text(TrainConfig, conf)}")


def resolved_yaml(words: list[str]) -> str:
    """The config the words resolve to, as YAML; required keys not yet given stay ``???``."""
    from omegaconf import OmegaConf

    from worldmot.config import merge_config
    from worldmot.training.config import TrainConfig
    from worldmot.training.settings import config_and_overrides

    config, overrides = config_and_overrides(words)
    return OmegaConf.to_yaml(merge_config(TrainConfig, [config], overrides))


def main(args: argparse.Namespace) -> int:
    from worldmot.training.loop import train
    from worldmot.training.settings import load_train_config

    if args.print_config:
        print(resolved_yaml(args.args), end="")
        return 0
    cfg = load_train_config(args.args)
    run = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"trained: {run}  (model: {run / 'model'}, curves: {run / 'curves.png'})")
    return 0
