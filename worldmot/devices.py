"""Where a command runs its model: ``auto`` (CUDA where this torch sees it), ``cpu`` or ``cuda``."""
from __future__ import annotations

import torch

from worldmot.errors import WorldmotError


def wants_cuda(choice: str, flag: str) -> bool:
    """choice: auto | cpu | cuda -> run on CUDA? ``flag`` spells the setting as the user gave it ("--device " on
    the command line, "device=" in a config) for the one-line error when CUDA is asked for and there is none."""
    if choice not in ("auto", "cpu", "cuda"):
        raise WorldmotError(f"{flag}{choice}: expected auto, cpu or cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise WorldmotError(f"{flag}cuda: this torch sees no CUDA device (use {flag}cpu or auto)")
    return choice == "cuda" or (choice == "auto" and torch.cuda.is_available())


def to_device(x: torch.Tensor, device: torch.device | str, *, compiling: bool = False) -> torch.Tensor:
    """x on device; from the CPU to a GPU through pinned memory and without blocking: a pageable copy waits for
    everything queued on the GPU, so each one left the GPU idle while the host caught up. ``compiling``: inside a
    torch.compile trace (no pinning there)."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu" and not compiling:
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
