"""Masked attention in query chunks, each over only the keys its mask allows.

A training window's mask allows 44% of the (query, key) pairs (block-causal, noisy frames seen only by
themselves), and SDPA with a boolean mask computes all of them. Split the queries of the routed order into
chunks of at most ``size`` rows inside each expert slice (clean and noisy tokens apart) and give each chunk only
the keys that any of its rows may see: base's window then computes 51% of the full product in 64-row chunks,
and each frame's chunk is a 64-token block that sees every one of its keys, so it runs without a mask (flash
kernels on a GPU). The result is the same function: a row's softmax runs over the same allowed keys.

Built on the host from the plan's mask, once per routing plan; the key indices and the partial masks live on
the plan's device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AttentionChunk:
    """Queries [start, end) of the routed order; ``keys``: the routed positions they may see (a slice where
    those are contiguous); ``mask`` (end - start, n_keys) bool, None where every pair is allowed."""

    start: int
    end: int
    keys: slice | torch.Tensor
    mask: torch.Tensor | None


def plan_chunks(mask: np.ndarray, bounds: list[tuple[int, int]], size: int, device: torch.device,
                ) -> list[AttentionChunk]:
    """mask (n, n) bool in the routed order; bounds: [start, end) runs of rows to chunk apart (the expert
    slices' clean and noisy parts, in order, covering 0..n) -> chunks of at most ``size`` rows."""
    chunks = []
    for lo, hi in bounds:
        for start in range(lo, hi, size):
            end = min(start + size, hi)
            keys = np.nonzero(mask[start:end].any(0))[0]
            sub = mask[start:end][:, keys]
            contiguous = keys[-1] - keys[0] + 1 == len(keys)
            chunks.append(AttentionChunk(
                start, end,
                slice(int(keys[0]), int(keys[-1]) + 1) if contiguous else torch.as_tensor(keys, device=device),
                None if sub.all() else torch.as_tensor(sub, device=device)))
    return chunks


def computed_fraction(chunks: list[AttentionChunk], n: int) -> float:
    """The fraction of the n x n product that the chunks compute."""
    width = lambda c: c.keys.stop - c.keys.start if isinstance(c.keys, slice) else len(c.keys)
    return sum((c.end - c.start) * width(c) for c in chunks) / n**2


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: list[AttentionChunk]) -> torch.Tensor:
    """q, k, v (B, H, n, dh) in the routed order -> (B, H, n, dh), as SDPA with the chunks' whole mask."""
    out = []
    for c in chunks:
        if isinstance(c.keys, slice):
            kc, vc = k[:, :, c.keys], v[:, :, c.keys]
        else:
            kc, vc = k.index_select(2, c.keys), v.index_select(2, c.keys)
        out.append(F.scaled_dot_product_attention(q[:, :, c.start:c.end], kc, vc, attn_mask=c.mask))
    return torch.cat(out, 2)
