"""A layout's index arrays as device tensors, built once per layout and device.

Planning is many small forwards: each host-to-device copy of an index array stalled a GPU step until the GPU
caught up, so what a forward needs of its layout is copied once and kept (:class:`DeviceConstants`).
Axes as in model/mot.py's legend: n segment length, D width, J noisy frames, F clean frames, Nc cameras of P
patches per frame, C*A a chunk's action values.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch

from worldmot.model.mot import position_embedding
from worldmot.sequence import ROLE_FRAME, ROLE_NOISY, ROLE_STATE, Layout, Segment


class _HoldsLayout(Protocol):
    layout: Layout


_Held = TypeVar("_Held", bound=_HoldsLayout)


class DeviceConstants:
    """``build()`` once per key. A key names a layout by its id, which a new layout can reuse once the old one
    is freed: what is held keeps its layout alive, and is rebuilt where the held layout is not the one asked."""

    def __init__(self):
        self._held: dict[tuple, _HoldsLayout] = {}

    def get(self, key: tuple, layout: Layout, build: Callable[[], _Held]) -> _Held:
        held = self._held.get(key)
        if held is None or held.layout is not layout:
            held = self._held[key] = build()
        return held


@dataclass
class SegmentConstants:
    """What the model's embedding needs of a segment's layout, as device tensors."""

    layout: Layout  # held so that the cache key (the layout's id) cannot be reused by another layout
    state_idx: torch.Tensor | None  # (Ns,) positions of the Ns states, None: none
    frame_idx: torch.Tensor | None  # (F*Nc*P,) positions of clean frame patches
    noisy_idx: torch.Tensor | None  # (J*Nc*P,) positions of noisy frame patches
    action_dim: torch.Tensor | None  # (n,) action dimension of each action bin, -1 elsewhere; None: no bins
    patch: torch.Tensor  # (n,) patch index in its camera's image, 0 outside frames
    camera: torch.Tensor  # (n,) camera of a frame patch (0 .. Nc-1), 0 outside frames
    in_patch: torch.Tensor  # (n, 1) 1.0 at frame patches, 0.0 elsewhere
    pos: torch.Tensor  # (n, D) sinusoidal embedding of the sequence positions
    # (J, C*A) positions in the segment of the chunk before each of its J noisy frames; None: none, or not
    # all of them in the segment
    noisy_action_pos: torch.Tensor | None

    @classmethod
    def of(cls, seg: Segment, action_dim: int, width: int, device: torch.device) -> SegmentConstants:
        role, patch = seg.arr("role"), seg.arr("patch")
        on = lambda a: torch.as_tensor(a, device=device)
        idx = lambda r: on(np.nonzero(role == r)[0]) if (role == r).any() else None
        dims = action_dims(seg.layout, action_dim)[seg.start:seg.end]
        steps = np.unique(seg.arr("step")[seg.arr("noisy")])  # segment order, as the trunk numbers them
        chunk_pos = seg.layout.actions[steps - 1] - seg.start  # (J, C*A)
        return cls(seg.layout, idx(ROLE_STATE), idx(ROLE_FRAME), idx(ROLE_NOISY),
                   on(dims) if (dims >= 0).any() else None, on(np.maximum(patch, 0)),
                   on(np.maximum(seg.arr("camera"), 0)),
                   on((patch >= 0)[:, None].astype(np.float32)), position_embedding(on(seg.arr("pos")), width),
                   on(chunk_pos) if len(steps) and (chunk_pos >= 0).all() else None)


@functools.cache  # layouts are built once per shape and compared by identity: one array per layout
def action_dims(layout: Layout, action_dim: int) -> np.ndarray:
    """(S,) the action dimension of each action-bin position of a layout (S positions), -1 elsewhere."""
    dims = np.full(layout.length, -1, dtype=np.int64)
    for row in layout.actions:
        dims[row] = np.arange(len(row)) % action_dim
    return dims
