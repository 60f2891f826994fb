"""Masked attention in query tiles, each over a contiguous run of keys that covers what its mask allows.

A training window's mask allows 44% of the (query, key) pairs (block-causal, noisy frames seen only by
themselves), and SDPA with a boolean mask computes all of them. Here the keys are put in one order -- the
noisy frames first, then the clean tokens in sequence order -- in which every clean query's keys are a prefix
of the clean ones and a noisy frame's are its own mask block up to the context it follows. The queries of the
routed order are split into tiles of at most ``size`` rows inside each expert slice (clean and noisy tokens
apart), and each tile attends to the run of keys that covers its rows' keys, with the mask only where that
run holds keys it may not see. Base's window then computes 53% of the full product in 64-row tiles, and the
clean frames' tiles and the last noisy frame's see every key of their run, so they run without a mask
(flash kernels on a GPU). Keys are reordered once per layer, as a permutation whose gradient is the inverse
permutation (no scatter-add); the runs are views. The result is the same function: each row's softmax runs
over the same allowed keys.

Built on the host from the routing's mask, once per routing; index tensors and partial masks live on the
routing's device. Axes as in mot.py's legend: n routed tokens, B batch, H heads, dh head width.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class QueryTile:
    """Queries [start, end) of the routed order attend to ``keys``, a run of the key order; ``mask``
    (end - start, run length) bool, None where every pair is allowed."""

    start: int
    end: int
    keys: slice
    mask: torch.Tensor | None


@dataclass(frozen=True)
class TiledMask:
    """A routed mask as query tiles: ``key_order`` (n,) the routed position of each key in the key order,
    ``key_inverse`` (n,) its inverse, ``tiles`` covering the queries 0..n in order."""

    key_order: torch.Tensor
    key_inverse: torch.Tensor
    tiles: list[QueryTile]


def tile_queries(mask: np.ndarray, bounds: list[tuple[int, int]], size: int, key_order: np.ndarray,
                 device: torch.device) -> TiledMask:
    """mask (n, n) bool in the routed order; bounds: [start, end) runs of rows to tile apart (the expert
    slices' clean and noisy parts, in order, covering 0..n); key_order (n,): a permutation of the routed
    positions -> tiles of at most ``size`` rows, each over the run of the key order that covers its keys."""
    ordered = mask[:, key_order]
    tiles = []
    for lo, hi in bounds:
        for start in range(lo, hi, size):
            end = min(start + size, hi)
            keys = np.nonzero(ordered[start:end].any(0))[0]
            run = slice(int(keys[0]), int(keys[-1]) + 1)
            sub = ordered[start:end, run]
            tiles.append(QueryTile(start, end, run, None if sub.all() else torch.as_tensor(sub, device=device)))
    return TiledMask(torch.as_tensor(key_order, device=device), torch.as_tensor(np.argsort(key_order), device=device),
                     tiles)


def computed_fraction(tiled: TiledMask) -> float:
    """The fraction of the n x n product that the tiles compute."""
    n = len(tiled.key_order)
    return sum((c.end - c.start) * (c.keys.stop - c.keys.start) for c in tiled.tiles) / n**2


class _Permute(torch.autograd.Function):
    """x.index_select(dim 2, order) whose backward gathers with the inverse permutation (index_select's own
    backward scatter-adds into zeros)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(2, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(2, inverse), None, None


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tiled: TiledMask) -> torch.Tensor:
    """q, k, v (B, H, n, dh) in the routed order -> (B, H, n, dh), as SDPA with the whole routed mask."""
    k = _Permute.apply(k, tiled.key_order, tiled.key_inverse)
    v = _Permute.apply(v, tiled.key_order, tiled.key_inverse)
    out = [F.scaled_dot_product_attention(q[:, :, c.start:c.end], k[:, :, c.keys], v[:, :, c.keys], attn_mask=c.mask)
           for c in tiled.tiles]
    return torch.cat(out, 2)
