"""Masked attention in query chunks, each over a contiguous run of keys that covers what its mask allows.

A training window's mask allows 44% of the (query, key) pairs (block-causal, noisy frames seen only by
themselves), and SDPA with a boolean mask computes all of them. Here the keys are put in one order -- the
noisy frames first, then the clean tokens in sequence order -- in which every clean query's keys are a prefix
of the clean ones and a noisy frame's are its own block up to the context it follows. The queries of the
routed order are split into chunks of at most ``size`` rows inside each expert slice (clean and noisy tokens
apart), and each chunk attends to the run of keys that covers its rows' keys, with the mask only where that
run holds keys it may not see. Base's window then computes 53% of the full product in 64-row chunks, and the
clean frames' chunks and the last noisy frame's see every key of their run, so they run without a mask
(flash kernels on a GPU). Keys are reordered once per layer, as a permutation whose gradient is the inverse
permutation (no scatter-add); the runs are views. The result is the same function: each row's softmax runs
over the same allowed keys.

Built on the host from the plan's mask, once per routing plan; index tensors and partial masks live on the
plan's device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AttentionChunk:
    """Queries [start, end) of the routed order attend to ``keys``, a run of the key order; ``mask``
    (end - start, run length) bool, None where every pair is allowed."""

    start: int
    end: int
    keys: slice
    mask: torch.Tensor | None


@dataclass(frozen=True)
class ChunkedMask:
    """A routed mask as query chunks: ``key_order`` (n,) the routed position of each key in the key order,
    ``key_inverse`` (n,) its inverse, ``chunks`` covering the queries 0..n in order."""

    key_order: torch.Tensor
    key_inverse: torch.Tensor
    chunks: list[AttentionChunk]


def plan_chunks(mask: np.ndarray, bounds: list[tuple[int, int]], size: int, key_order: np.ndarray,
                device: torch.device) -> ChunkedMask:
    """mask (n, n) bool in the routed order; bounds: [start, end) runs of rows to chunk apart (the expert
    slices' clean and noisy parts, in order, covering 0..n); key_order (n,): a permutation of the routed
    positions -> chunks of at most ``size`` rows, each over the run of the key order that covers its keys."""
    ordered = mask[:, key_order]
    chunks = []
    for lo, hi in bounds:
        for start in range(lo, hi, size):
            end = min(start + size, hi)
            keys = np.nonzero(ordered[start:end].any(0))[0]
            run = slice(int(keys[0]), int(keys[-1]) + 1)
            sub = ordered[start:end, run]
            chunks.append(AttentionChunk(start, end, run, None if sub.all() else torch.as_tensor(sub, device=device)))
    return ChunkedMask(torch.as_tensor(key_order, device=device), torch.as_tensor(np.argsort(key_order), device=device),
                       chunks)


def computed_fraction(chunked: ChunkedMask) -> float:
    """The fraction of the n x n product that the chunks compute."""
    n = len(chunked.key_order)
    return sum((c.end - c.start) * (c.keys.stop - c.keys.start) for c in chunked.chunks) / n**2


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


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunked: ChunkedMask) -> torch.Tensor:
    """q, k, v (B, H, n, dh) in the routed order -> (B, H, n, dh), as SDPA with the whole routed mask."""
    k = _Permute.apply(k, chunked.key_order, chunked.key_inverse)
    v = _Permute.apply(v, chunked.key_order, chunked.key_inverse)
    out = [F.scaled_dot_product_attention(q[:, :, c.start:c.end], k[:, :, c.keys], v[:, :, c.keys], attn_mask=c.mask)
           for c in chunked.chunks]
    return torch.cat(out, 2)
