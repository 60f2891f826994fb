"""A training run's TrainConfig from the command line's words: ``[CONFIG] key=value ...``.

CONFIG is a YAML file or a name in configs/train/ (default: tiny); ``worldmot train`` and the demo both read
their settings through :func:`load_train_config`.
"""
from __future__ import annotations

from pathlib import Path

from worldmot.config import load_config, named_config
from worldmot.errors import WorldmotError
from worldmot.training.config import TrainConfig


def config_and_overrides(args: list[str]) -> tuple[Path, list[str]]:
    """At most one CONFIG among ``args`` (default: tiny) as its file, and the key=value overrides."""
    positional = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(positional) > 1:
        raise WorldmotError(f"expected one CONFIG and key=value overrides, got {positional}")
    return named_config("train", positional[0] if positional else "tiny"), overrides


def load_train_config(args: list[str]) -> TrainConfig:
    """At most one CONFIG among ``args``, then its key=value overrides."""
    config, overrides = config_and_overrides(args)
    return load_config(TrainConfig, files=[config], overrides=overrides)
