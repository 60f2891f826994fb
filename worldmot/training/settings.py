"""A training run's TrainConfig from the command line's words: ``[CONFIG] key=value ...``.

CONFIG is a YAML file or a name in configs/train/ (default: tiny); ``worldmot train`` and the demo both read
their settings through :func:`load_train_config`.
"""
from __future__ import annotations

from pathlib import Path

from worldmot.config import config_dir, load_config
from worldmot.errors import WorldmotError
from worldmot.training.config import TrainConfig


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


def load_train_config(args: list[str]) -> TrainConfig:
    """At most one CONFIG among ``args``, then its key=value overrides."""
    positional = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(positional) > 1:
        raise WorldmotError(f"expected one CONFIG and key=value overrides, got {positional}")
    config = resolve_config_file(positional[0] if positional else "tiny")
    return load_config(TrainConfig, files=[config], overrides=overrides)
