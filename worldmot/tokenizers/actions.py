"""Action tokenizer: per-dimension uniform bins between the dataset's q01 and q99, and action chunks.

Bin b of dimension d covers ``[low + b*w, low + (b+1)*w)`` with ``w = (high - low) / n_bins``; decoding
returns the bin centre. Round-trip bound: ``|decode(encode(x)) - x| <= w/2`` inside ``[low, high]`` and the
distance to the range outside it (those values are clipped and counted).

Tokens of one chunk of C actions are laid out chunk-step-major, then dimension: ``a[0,0], a[0,1], ...,
a[0,D-1], a[1,0], ...`` (C*D tokens), which is what ``encode_chunk``/``decode_chunk`` do.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch

from worldmot.errors import WorldmotError

# A degenerate dimension (high <= low: a constant action) gets this width so nothing divides by zero.
_MIN_WIDTH = 1e-6


def _load_stats(stats: dict | str | os.PathLike) -> dict:
    if isinstance(stats, dict):
        return stats
    try:
        with open(stats) as f:
            return json.load(f)
    except FileNotFoundError:
        raise WorldmotError(f"stats file not found: {stats}") from None
    except json.JSONDecodeError as e:
        raise WorldmotError(f"{stats}: not valid JSON ({e})") from None


class ActionTokenizer:
    """Uniform per-dimension binning of actions of shape (..., D).

    Args:
        low, high: (D,) range per dimension (the dataset's q01 and q99).
        n_bins: bins per dimension; token ids are 0..n_bins-1.
    """

    def __init__(self, low, high, n_bins: int = 256) -> None:
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise WorldmotError(f"action range: low {low.shape} and high {high.shape} must be equal non-empty (D,)")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise WorldmotError("action range: low and high must be finite")
        if int(n_bins) < 1:
            raise WorldmotError(f"action tokenizer: n_bins must be >= 1, got {n_bins}")
        # A degenerate dimension is centred on its value, so it normalises to 0 and decodes to itself.
        min_width = _MIN_WIDTH * np.maximum(1.0, np.abs(low))  # stays above float rounding for large |low|
        degenerate = high - low < min_width
        centre = (low + high) / 2
        self.low = np.where(degenerate, centre - min_width / 2, low)
        self.high = np.where(degenerate, centre + min_width / 2, high)
        self.n_bins = int(n_bins)
        self.bin_width = (self.high - self.low) / self.n_bins
        self.dim = int(low.size)
        self.reset_clip_counter()

    # ---------------------------------------------------------------- construction / serialisation

    @classmethod
    def from_stats(cls, stats: dict | str | os.PathLike, key: str = "action", n_bins: int = 256) -> ActionTokenizer:
        """From a LeRobot v3 ``meta/stats.json`` (a dict or its path): ``stats[key]["q01"/"q99"]``.

        Falls back to ``min``/``max`` when the quantiles are missing.
        """
        stats = _load_stats(stats)
        if key not in stats:
            raise WorldmotError(f"stats has no key {key!r} (keys: {', '.join(sorted(stats)) or 'none'})")
        entry = stats[key]
        for lo, hi in (("q01", "q99"), ("min", "max")):
            if lo in entry and hi in entry:
                return cls(entry[lo], entry[hi], n_bins)
        raise WorldmotError(f"stats[{key!r}] has neither q01/q99 nor min/max")

    @classmethod
    def from_data(cls, actions, n_bins: int = 256) -> ActionTokenizer:
        """Between the exact q01/q99 of ``actions`` (N, A) per dimension.

        LeRobot's stats.json aggregates quantiles as count-weighted means of per-episode quantiles; when each
        episode's actions are nearly constant (a scripted expert moving straight to its goal) those collapse
        to the mean, and every action would land in the first or last bin. Training therefore bins between
        the quantiles of the training episodes' own actions.
        """
        a = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
        if len(a) == 0:
            raise WorldmotError("actions: no rows to compute the binning range from")
        low, high = np.quantile(a, 0.01, axis=0), np.quantile(a, 0.99, axis=0)
        return cls(low, high, n_bins)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description; ``from_dict(to_dict())`` rebuilds the same tokenizer."""
        return {"low": self.low.tolist(), "high": self.high.tolist(), "n_bins": self.n_bins}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionTokenizer:
        missing = [k for k in ("low", "high", "n_bins") if k not in d]
        if missing:
            raise WorldmotError(f"action tokenizer dict is missing {', '.join(missing)}")
        return cls(d["low"], d["high"], d["n_bins"])

    # ---------------------------------------------------------------- binning

    def _range_like(self, x):
        """low, width, high as arrays/tensors matching ``x`` (float64 for exact bins)."""
        if isinstance(x, torch.Tensor):
            def conv(a):
                return torch.as_tensor(a, dtype=torch.float64, device=x.device)
            return conv(self.low), conv(self.bin_width), conv(self.high)
        return self.low, self.bin_width, self.high

    def _check_shape(self, x, what: str) -> None:
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise WorldmotError(f"{what}: expected shape (..., {self.dim}), got {tuple(x.shape)}")

    def encode(self, actions, return_clipped: bool = False):
        """Bins (..., D) int64 of ``actions`` (..., D); torch in -> torch out, otherwise numpy.

        Values outside ``[low, high]`` go to the edge bin and are counted in ``n_clipped``; with
        ``return_clipped`` also returns the (..., D) bool mask of clipped values.
        """
        is_torch = isinstance(actions, torch.Tensor)
        x = actions.to(torch.float64) if is_torch else np.asarray(actions, dtype=np.float64)
        self._check_shape(x, "actions")
        finite = torch.isfinite(x).all() if is_torch else np.isfinite(x).all()
        if not bool(finite):
            raise WorldmotError("actions contain NaN or inf")
        low, width, high = self._range_like(x)
        clipped = (x < low) | (x > high)
        idx = ((x - low) / width).floor() if is_torch else np.floor((x - low) / width)
        if is_torch:
            bins = idx.clamp(0, self.n_bins - 1).to(torch.int64)
            per_dim = clipped.reshape(-1, self.dim).sum(0).cpu().numpy()
        else:
            bins = np.clip(idx, 0, self.n_bins - 1).astype(np.int64)
            per_dim = clipped.reshape(-1, self.dim).sum(0)
        self.n_clipped_per_dim += per_dim.astype(np.int64)
        self.n_seen += int(np.prod(x.shape))
        return (bins, clipped) if return_clipped else bins

    def decode(self, bins):
        """Bin centres (..., D) of ``bins`` (..., D): torch float32 for torch in, numpy float64 otherwise."""
        is_torch = isinstance(bins, torch.Tensor)
        b = bins if is_torch else np.asarray(bins)
        self._check_shape(b, "action bins")
        if b.numel() if is_torch else b.size:
            lo, hi = int(b.min()), int(b.max())
            if lo < 0 or hi >= self.n_bins:
                raise WorldmotError(f"action bin {lo if lo < 0 else hi} is outside [0, {self.n_bins})")
        low, width, _ = self._range_like(b)
        if is_torch:
            return (low + (b.to(torch.float64) + 0.5) * width).to(torch.get_default_dtype())
        return low + (b.astype(np.float64) + 0.5) * width

    # ---------------------------------------------------------------- chunks

    def encode_chunk(self, chunk):
        """(..., C, D) actions -> (..., C*D) tokens, step-major then dimension."""
        bins = self.encode(chunk)
        return bins.reshape(*bins.shape[:-2], -1)

    def decode_chunk(self, tokens):
        """(..., C*D) tokens -> (..., C, D) actions."""
        if tokens.shape[-1] % self.dim:
            raise WorldmotError(f"action tokens: last dim {tokens.shape[-1]} is not a multiple of D={self.dim}")
        return self.decode(tokens.reshape(*tokens.shape[:-1], -1, self.dim))

    # ---------------------------------------------------------------- continuous normalisation

    def normalize(self, x, clip: bool = False):
        """Map ``[low, high]`` to ``[-1, 1]`` per dimension (outside values land outside unless ``clip``).

        torch in -> torch out (its float dtype, float32 for integer input), otherwise numpy float64.
        """
        v, back = _as_float64(x)
        low, _, high = self._range_like(v)
        y = 2 * (v - low) / (high - low) - 1
        if clip:
            y = y.clamp(-1, 1) if isinstance(y, torch.Tensor) else np.clip(y, -1, 1)
        return back(y)

    def unnormalize(self, y, clip: bool = False):
        """Inverse of ``normalize``: ``[-1, 1]`` back to ``[low, high]`` (``clip`` first clips y to [-1, 1])."""
        v, back = _as_float64(y)
        if clip:
            v = v.clamp(-1, 1) if isinstance(v, torch.Tensor) else np.clip(v, -1, 1)
        low, _, high = self._range_like(v)
        return back(low + (v + 1) / 2 * (high - low))

    # ---------------------------------------------------------------- clip accounting

    def reset_clip_counter(self) -> None:
        self.n_clipped_per_dim = np.zeros(self.dim, dtype=np.int64)
        self.n_seen = 0

    @property
    def n_clipped(self) -> int:
        return int(self.n_clipped_per_dim.sum())

    def clip_report(self) -> str:
        """One line: how many action values fell outside [q01, q99] since the last reset, per dimension."""
        if self.n_seen == 0:
            return "actions: none encoded yet"
        pct = 100.0 * self.n_clipped / self.n_seen
        per_dim = ", ".join(str(int(n)) for n in self.n_clipped_per_dim)
        return (
            f"actions: {self.n_clipped} of {self.n_seen} values clipped to [q01, q99] ({pct:.2f}%); "
            f"per dim: [{per_dim}]"
        )

    def __repr__(self) -> str:
        return f"ActionTokenizer(dim={self.dim}, n_bins={self.n_bins})"


def _as_float64(x):
    """(x as float64, a function that converts a result back to x's kind): exact arithmetic on the range."""
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return x.to(torch.float64), lambda y: y.to(dtype)
    return np.asarray(x, dtype=np.float64), lambda y: y


def chunk_actions(actions, chunk: int):
    """Split (T, D) actions into (ceil(T/C), C, D) chunks plus a (ceil(T/C), C) bool mask (True = real).

    The last chunk is padded by repeating the last action (a hold), so a decoded padded chunk is harmless
    even where a caller forgets the mask. torch in -> torch out, otherwise numpy.
    """
    if chunk < 1:
        raise WorldmotError(f"action chunk size must be >= 1, got {chunk}")
    is_torch = isinstance(actions, torch.Tensor)
    a = actions if is_torch else np.asarray(actions)
    if a.ndim != 2 or a.shape[0] == 0:
        raise WorldmotError(f"actions: expected a non-empty (T, D) array, got {tuple(a.shape)}")
    t, d = a.shape
    n = math.ceil(t / chunk)
    idx = np.minimum(np.arange(n * chunk), t - 1)  # repeat the last row into the padding
    mask = (np.arange(n * chunk) < t).reshape(n, chunk)
    if is_torch:
        out = a[torch.as_tensor(idx, device=a.device)].reshape(n, chunk, d)
        return out, torch.as_tensor(mask, device=a.device)
    return a[idx].reshape(n, chunk, d), mask


def unchunk_actions(chunks, mask):
    """Inverse of ``chunk_actions``: (N, C, D) chunks and (N, C) mask -> (T, D) real actions."""
    d = chunks.shape[-1]
    return chunks.reshape(-1, d)[mask.reshape(-1)]
