"""Frames for Rerun: any layout to HWC uint8, strips and grids, and when to send JPEG instead of raw pixels.

Rerun shows HWC uint8 images. Model outputs come as CHW floats in [-1, 1], datasets and envs give HWC
uint8; ``to_hwc_uint8`` takes either. Raw frames are cheapest to log (no encoding) but a long evaluation of
raw frames makes a file of gigabytes; ``ImagePolicy`` switches to JPEG for large frames, and for every frame
once a recording has logged a budget of raw bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from worldmot.errors import WorldmotError

_CHANNELS = (1, 3, 4)


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array of a numpy array, torch tensor (any device) or nested list."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def to_hwc_uint8(frames: Any, value_range: tuple[float, float] = (-1.0, 1.0), what: str = "frames") -> np.ndarray:
    """Frames (..., H, W, C) or (..., C, H, W), uint8 or float in ``value_range`` -> (..., H, W, 3) uint8.

    C is 1, 3 or 4 (grey is repeated to RGB, alpha dropped). The channel axis is the last one when its size is
    1, 3 or 4, else the third from last.
    """
    x = to_numpy(frames)
    if x.ndim < 3:
        raise WorldmotError(f"{what}: shape {list(x.shape)} (expected (..., H, W, 3) or (..., 3, H, W))")
    if x.shape[-1] not in _CHANNELS:
        if x.shape[-3] not in _CHANNELS:
            raise WorldmotError(f"{what}: shape {list(x.shape)} (expected (..., H, W, 3) or (..., 3, H, W))")
        x = np.moveaxis(x, -3, -1)
    if x.dtype != np.uint8:
        if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
            raise WorldmotError(f"{what}: dtype {x.dtype} (expected uint8 or float)")
        lo, hi = value_range
        x = np.clip((x.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 4:
        x = x[..., :3]
    return np.ascontiguousarray(x)


def resize(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 to (h, w, 3) with area interpolation (shrinking) or linear (growing)."""
    if frame.shape[:2] == tuple(hw):
        return frame
    shrink = hw[0] * hw[1] < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def strip(frames: list[np.ndarray | None], hw: tuple[int, int], gap: int = 1) -> np.ndarray:
    """Frames side by side, each resized to ``hw``; a None leaves its place black."""
    h, w = hw
    out = np.zeros((h, len(frames) * (w + gap) - gap, 3), np.uint8)
    for i, f in enumerate(frames):
        if f is not None:
            out[:, i * (w + gap):i * (w + gap) + w] = resize(f, hw)
    return out


def grid(frames: np.ndarray, gap: int = 1) -> np.ndarray:
    """(R, C, h, w, 3) uint8 -> one image of R rows and C columns."""
    r, c, h, w, _ = frames.shape
    out = np.zeros((r * (h + gap) - gap, c * (w + gap) - gap, 3), np.uint8)
    for i in range(r):
        for j in range(c):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = frames[i, j]
    return out


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise WorldmotError(f"frame of shape {list(frame.shape)}: JPEG encoding failed")
    return buf.tobytes()


@dataclass
class ImagePolicy:
    """Raw or JPEG, per frame. ``compress``: "auto" (JPEG for frames of more than ``jpeg_above_pixels`` pixels,
    and for every frame once ``raw_budget_mb`` of raw frames have been logged), "always" or "never"."""

    compress: str = "auto"
    jpeg_quality: int = 90
    jpeg_above_pixels: int = 128 * 128
    raw_budget_mb: float = 256.0
    raw_bytes: int = 0  # raw frame bytes decided so far

    def __post_init__(self) -> None:
        if self.compress not in ("auto", "always", "never"):
            raise WorldmotError(f"compress={self.compress!r} (expected auto, always or never)")

    def use_jpeg(self, h: int, w: int, count: int = 1) -> bool:
        """Whether ``count`` frames of h x w go out as JPEG; counts them against the raw budget if not."""
        if self.compress != "auto":
            jpeg = self.compress == "always"
        else:
            jpeg = h * w > self.jpeg_above_pixels or self.raw_bytes + count * h * w * 3 > self.raw_budget_mb * 2**20
        if not jpeg:
            self.raw_bytes += count * h * w * 3
        return jpeg
