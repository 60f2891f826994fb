"""Feature statistics the way LeRobot computes them: per episode, then aggregated over episodes.

Numeric features: min/max/mean/std/count and the quantiles q01 q10 q50 q90 q99 per dimension (shape (d,);
(1,) for scalars). Camera features: per channel over a sample of frames, scaled to [0, 1], shape (3, 1, 1).
Aggregation weights means and quantiles by count and combines variances exactly (parallel algorithm); the
aggregated quantiles are count-weighted means of the per-episode ones, as in LeRobot.
"""
from __future__ import annotations

import numpy as np

from worldmot.datasets.format import QUANTILES

QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)


def sample_indices(n: int, min_samples: int = 100, max_samples: int = 10_000, power: float = 0.75) -> np.ndarray:
    """LeRobot's frame sample for image stats: all frames up to 100, then about n**0.75, evenly spread."""
    k = max(min(min_samples, n), min(int(n**power), max_samples))
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def _stats(x: np.ndarray, axis: tuple[int, ...] | int, keepdims: bool) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    out = {
        "min": x.min(axis=axis, keepdims=keepdims),
        "max": x.max(axis=axis, keepdims=keepdims),
        "mean": x.mean(axis=axis, keepdims=keepdims),
        "std": x.std(axis=axis, keepdims=keepdims),
    }
    qs = np.quantile(x, QUANTILES, axis=axis, keepdims=keepdims)
    out.update({k: q for k, q in zip(QUANTILE_KEYS, qs)})
    return out


def numeric_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of one episode's column: values (N,) or (N, d) -> each stat (1,) or (d,); count (1,)."""
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.float64)
    st = _stats(values, axis=0, keepdims=values.ndim == 1)
    st["count"] = np.array([len(values)])
    return st


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of frames (N, H, W, 3) uint8 -> each stat (3, 1, 1) in [0, 1]; count (1,).

    Computed from each channel's 256-bin histogram, so exact and cheap; quantiles are the smallest value
    whose cumulative share reaches q.
    """
    frames = np.asarray(frames)
    hist = np.stack([np.bincount(frames[..., c].reshape(-1), minlength=256) for c in range(3)]).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = hist.sum(axis=1, keepdims=True)
    mean = (hist * values).sum(axis=1) / total[:, 0]
    var = (hist * (values[None] - mean[:, None]) ** 2).sum(axis=1) / total[:, 0]
    cdf = np.cumsum(hist, axis=1) / total
    nonzero = hist > 0
    out = {
        "min": values[nonzero.argmax(axis=1)],
        "max": values[255 - nonzero[:, ::-1].argmax(axis=1)],
        "mean": mean,
        "std": np.sqrt(var),
    }
    out.update({k: values[np.minimum((cdf < q).sum(axis=1), 255)] for k, q in zip(QUANTILE_KEYS, QUANTILES)})
    out = {k: v.reshape(3, 1, 1) for k, v in out.items()}
    out["count"] = np.array([len(frames)])
    return out


def aggregate(stats_list: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Combine per-episode (or per-dataset) stats into one set, feature by feature."""
    keys = {k for s in stats_list for k in s}
    return {k: _aggregate_feature([s[k] for s in stats_list if k in s]) for k in sorted(keys)}


def _aggregate_feature(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    # count is one number per part (frames, or sampled frames for cameras), so weights are scalars
    w = np.array([float(np.asarray(p["count"]).reshape(-1)[0]) for p in parts])
    total = w.sum()

    def wmean(key: str) -> np.ndarray:
        vals = np.stack([np.asarray(p[key], dtype=np.float64) for p in parts])
        return np.tensordot(w, vals, axes=1) / total

    mean = wmean("mean")
    second = sum(wi * (np.asarray(p["std"], np.float64) ** 2 + (np.asarray(p["mean"], np.float64) - mean) ** 2)
                 for wi, p in zip(w, parts)) / total
    out = {
        "min": np.min(np.stack([np.asarray(p["min"], dtype=np.float64) for p in parts]), axis=0),
        "max": np.max(np.stack([np.asarray(p["max"], dtype=np.float64) for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.maximum(second, 0.0)),
        "count": np.array([int(total)]),
    }
    out.update({q: wmean(q) for q in QUANTILE_KEYS if all(q in p for p in parts)})
    return out
