"""Training checkpoints: written atomically, verified on load, never unpickled.

RUN/checkpoints/step_00000250/
    model.safetensors  ema.safetensors  optim.safetensors   tensors (weights, EMA, AdamW moments, RNG)
    state.json         step, optimizer hyper-parameters, file checksums
    config.yaml        the resolved TrainConfig

A checkpoint folder is assembled under a temporary name and renamed into place, so every step_* folder is
complete; its files carry SHA-256 sums so that a file damaged later is reported, not loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldmot.errors import WorldmotError
from worldmot.io import atomic_dir, fault_point

FILES = ("model.safetensors", "ema.safetensors", "optim.safetensors", "config.yaml")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _state_tensors(state_dict: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """AdamW state as flat tensors ``state.<param>.<name>`` plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {f"state.{pid}.{name}": torch.as_tensor(v).detach().cpu().contiguous()
               for pid, st in sd["state"].items() for name, v in st.items()}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def optimizer_from_files(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module,
                    opt: torch.optim.Optimizer, cfg: Any, extra: dict | None = None, keep: int = 2) -> Path:
    """Write RUN/checkpoints/step_<step>/ atomically and prune all but the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"

    def write(tmp: Path) -> None:
        save_file(_state_tensors(model.state_dict()), str(tmp / "model.safetensors"))
        save_file(_state_tensors(ema.state_dict()), str(tmp / "ema.safetensors"))
        opt_tensors, groups = optimizer_to_files(opt)
        opt_tensors["rng.torch"] = torch.get_rng_state()
        save_file(opt_tensors, str(tmp / "optim.safetensors"))
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        state = {"step": step, "param_groups": groups, "extra": extra or {},
                 "sha256": {name: _sha256(tmp / name) for name in FILES}}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))

    atomic_dir(final, write)
    prune(run_dir, keep)
    return final


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (0: keep all)."""
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        _prune(old)


def _prune(folder: Path) -> None:
    """Delete a checkpoint folder, hidden first: a kill halfway through the deletion leaves no step_* folder
    with files missing (resume would take the newest one anyway, but a user should not find it)."""
    hidden = folder.with_name(f".{folder.name}.old-pruned")
    os.replace(folder, hidden)
    fault_point(f"{folder.name}/:pruned")
    shutil.rmtree(hidden, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (the hidden temporary ``.step_*`` folders are not checkpoints)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []


def clean_partial(run_dir: Path) -> None:
    """Remove folders left by a process killed while writing a checkpoint."""
    root = Path(run_dir) / "checkpoints"
    for p in root.glob(".step_*") if root.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """{step, model, ema, optim (state_dict), rng, config_yaml, extra} of a checkpoint folder, verified."""
    path = Path(path)
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text())
        sums = state["sha256"]
    except FileNotFoundError:
        raise WorldmotError(f"{state_file}: missing (incomplete checkpoint)") from None
    except (ValueError, KeyError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WorldmotError(f"{state_file}: corrupt (expected JSON with step and sha256)") from None
    for name in FILES:
        f = path / name
        if not f.is_file():
            raise WorldmotError(f"{f}: missing (incomplete checkpoint)")
        if _sha256(f) != sums.get(name):
            raise WorldmotError(f"{f}: checksum mismatch (corrupt checkpoint file); "
                                f"delete {path} to resume from an earlier checkpoint")
    try:
        model, ema, opt = (load_file(str(path / n)) for n in FILES[:3])
    except (SafetensorError, OSError) as e:
        raise WorldmotError(f"{path}: unreadable safetensors ({e})") from None
    rng = opt.pop("rng.torch", None)
    return {"step": int(state["step"]), "model": model, "ema": ema,
            "optim": optimizer_from_files(opt, state["param_groups"]), "rng": rng,
            "config_yaml": (path / "config.yaml").read_text(), "extra": state.get("extra", {})}


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
