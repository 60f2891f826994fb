"""CUDA's autocast policy for the norms, on any device: counting on a CPU what a GPU step moves.

CUDA autocast runs ``layer_norm`` and ``rms_norm`` in fp32 (torch's fp32 op list); the CPU's leaves them in their
input's dtype. The memory traffic that ``tools/benchmarks/kernel_traffic.py`` counts on a CPU is the GPU's only if the
compiled graph sees the GPU's dtypes, so inside :func:`cuda_norm_policy` the two functions upcast as CUDA's
autocast would (the trunk and ``nn.LayerNorm`` call them through ``torch.nn.functional``, looked up per call).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F


def _fp32_under_autocast(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """fn run on fp32 copies of its floating-point tensor arguments while autocast is on, as CUDA's policy does."""

    @functools.wraps(fn)
    def upcast(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return fn(x, *args, **kwargs)
        up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        with torch.autocast(x.device.type, enabled=False):
            return fn(up(x), *map(up, args), **{k: up(v) for k, v in kwargs.items()})

    return upcast


@contextlib.contextmanager
def cuda_norm_policy() -> Iterator[None]:
    """Within: F.layer_norm and F.rms_norm follow CUDA autocast's fp32 policy on every device."""
    saved = F.layer_norm, F.rms_norm
    F.layer_norm, F.rms_norm = (_fp32_under_autocast(fn) for fn in saved)
    try:
        yield
    finally:
        F.layer_norm, F.rms_norm = saved
