"""Saving and loading a ready world model: safetensors weights + resolved YAML config + JSON metadata.

Nothing here unpickles: a model folder from someone else cannot run code when loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldmot.config import ModelConfig, from_yaml_text, to_yaml
from worldmot.errors import WorldmotError
from worldmot.io import atomic_dir, atomic_write, settled_dir

WEIGHTS, CONFIG, META = "model.safetensors", "config.yaml", "model_meta.json"
# written after training, by tools/probes/calibrate_goal_judge.py --write; a new export of the weights drops it
GOAL_JUDGE = "goal_judge.json"
REWRITE_JUDGE = "calibrate again (tools/probes/calibrate_goal_judge.py --write) or delete the file"
FORMAT = 1


def save_model(model, path: str | Path, trained_on: dict | None = None, step: int | None = None) -> Path:
    """Write ``path/`` = {model.safetensors, config.yaml, model_meta.json} atomically (temp folder, rename).

    ``trained_on``: {"env": the dataset's robot_type, "features": {key: shape}} that evaluation checks.
    ``step``: the training step the weights are from (a resumed run re-exports a checkpoint the export lags)."""
    def write(tmp: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(to_yaml(model.cfg))
        meta = {"format": FORMAT, "action_tokenizer": model.action_tokenizer.to_dict()}
        if trained_on is not None:
            meta["trained_on"] = trained_on
        if step is not None:
            meta["step"] = step
        (tmp / META).write_text(json.dumps(meta, indent=1))

    return atomic_dir(path, write)


def read_model_files(path: str | Path) -> tuple[ModelConfig, dict, dict[str, torch.Tensor]]:
    """(config, meta, weights) of a saved model folder, each checked; errors name the file."""
    path = model_dir(path)
    for name in (WEIGHTS, CONFIG, META):
        if not (path / name).is_file():
            raise WorldmotError(f"{path / name}: missing (expected a model folder written by worldmot)")
    cfg = from_yaml_text(ModelConfig, (path / CONFIG).read_text(), source=str(path / CONFIG))
    try:
        meta = json.loads((path / META).read_text())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise WorldmotError(f"{path / META}: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if meta.get("format") != FORMAT or "action_tokenizer" not in meta:
        raise WorldmotError(f"{path / META}: expected format {FORMAT} with an action_tokenizer entry")
    try:
        weights = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise WorldmotError(f"{path / WEIGHTS}: unreadable safetensors file ({e})") from None
    return cfg, meta, weights


def model_dir(path: str | Path) -> Path:
    """The model folder ``path`` names: itself, or a training run folder's exported model/."""
    path = settled_dir(path)  # a kill while an export replaced this folder: the version it replaced
    if not (path / WEIGHTS).exists() and (settled_dir(path / "model") / WEIGHTS).exists():
        path = settled_dir(path / "model")
    return path


def read_goal_tolerance(path: str | Path) -> float | None:
    """The goal judge's tolerance calibrated for the model folder at ``path`` (None: not calibrated)."""
    file = model_dir(path) / GOAL_JUDGE
    if not file.is_file():
        return None
    try:
        tolerance = json.loads(file.read_text())["tolerance"]
    except (ValueError, KeyError, TypeError) as e:
        raise WorldmotError(f"{file}: expected JSON with a number 'tolerance' ({type(e).__name__}: {e}); "
                            f"{REWRITE_JUDGE}") from None
    if not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise WorldmotError(f"{file}: tolerance {tolerance!r}, expected a positive number; {REWRITE_JUDGE}")
    return float(tolerance)


def write_goal_tolerance(path: str | Path, calibration: dict) -> Path:
    """Keep ``calibration`` ({"tolerance": float, ...how it was measured}) with the model folder at ``path``."""
    return atomic_write(model_dir(path) / GOAL_JUDGE, lambda tmp: tmp.write_text(json.dumps(calibration, indent=1)))


def exported_step(path: str | Path) -> int | None:
    """The training step of the model folder at ``path`` (None: no complete folder, or saved outside training)."""
    try:
        return json.loads((settled_dir(path) / META).read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None


# buffers that models saved before they existed lack; their initial values stand (state_read_r2: not measured)
OPTIONAL_BUFFERS = ("state_read_r2",)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """A WorldModel in eval mode from a folder written by :func:`save_model`."""
    from worldmot.model.world_model import WorldModel
    from worldmot.tokenizers.actions import ActionTokenizer

    cfg, meta, weights = read_model_files(path)
    model = WorldModel(cfg, ActionTokenizer.from_dict(meta["action_tokenizer"]))
    missing, unexpected = load_weights(model, weights, Path(path) / WEIGHTS)
    missing = [k for k in missing if k not in OPTIONAL_BUFFERS]
    if missing or unexpected:
        raise WorldmotError(f"{Path(path) / WEIGHTS}: weights do not fit the config "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.trained_on = meta.get("trained_on")
    model.goal_tolerance = read_goal_tolerance(path)
    return model.to(device).eval()


def load_weights(module: torch.nn.Module, weights: dict, source: Path | str, strict: bool = False):
    """``module.load_state_dict`` with a tensor of the wrong shape as a one-line error naming ``source``."""
    try:
        return module.load_state_dict(weights, strict=strict)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise WorldmotError(f"{source}: weights do not fit the config ({detail[:200]})") from None
