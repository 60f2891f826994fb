"""Text overlaid on video frames (evaluation and rollout videos): what a policy was told, did and said."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from worldmot.errors import WorldmotError


def draw_overlay(frame: np.ndarray, lines: Sequence[str], min_height: int = 256) -> np.ndarray:
    """A copy of the uint8 (H, W, 3) ``frame`` with ``lines`` of text in its top-left corner.

    Frames lower than ``min_height`` are first enlarged by an integer factor (nearest neighbour, so
    pixels stay sharp): text on a 64 px frame is unreadable, so the result can be larger than the input.
    White text with a black outline reads on any background. OpenCV's fonts are ASCII only: other
    characters show as "?". A line too wide for the frame is cut and ends with "..".
    """
    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise WorldmotError(f"overlay: expected a uint8 (H, W, 3) frame, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    factor = max(1, math.ceil(min_height / h))
    img = cv2.resize(img, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST) if factor > 1 else img.copy()
    h, w = img.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, h / 640)
    margin = max(3, h // 64)
    (_, text_h), baseline = cv2.getTextSize("Ag", font, scale, 1)
    y = margin + text_h
    for raw in lines:
        text = _fit_text("".join(c if 32 <= ord(c) < 127 else "?" for c in str(raw)), w - 2 * margin, font, scale)
        if y + baseline > h:
            break
        cv2.putText(img, text, (margin, y), font, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (margin, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        y += text_h + baseline + margin // 2
    return img


def _fit_text(text: str, width: int, font: int, scale: float) -> str:
    if cv2.getTextSize(text, font, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "..", font, scale, 1)[0][0] > width:
        text = text[:-1]
    return text + ".."
