"""The grounded reasoning text: how a reasoning line names table positions, written and read.

An expert's reasoning says where it is going ("move to red at +21,-13", "push block +05,-20 pad +30,+12"):
centimetres from the table centre, rounded to 1 cm. Experts write it (``format_position``); training's
metrics and tests read it back (``positions_in``). It is a text format, not a task: it lives below both.
"""
from __future__ import annotations

import re

import numpy as np

_POSITION = re.compile(r"([+-]\d\d),([+-]\d\d)")


def format_position(xy) -> str:
    """A table position (metres, first two values of ``xy``) as the reasoning writes it: "+21,-13".

    Grounded reasoning, as in embodied chain-of-thought: the model is trained to localise the named object
    in the frame with a direct target, and its actions can read the position from its own text. Rounded to
    1 cm (0.64 px at 64x64), clipped to +-99 cm.
    """
    x, y = (int(np.clip(np.rint(v * 100), -99, 99)) for v in np.asarray(xy, np.float64)[:2])
    return f"{x:+03d},{y:+03d}"


def positions_in(text: str) -> np.ndarray:
    """(n, 2) the table positions (metres) a reasoning text names, in order: the inverse of ``format_position``."""
    found = _POSITION.findall(text)
    return np.array([[int(x) / 100, int(y) / 100] for x, y in found], np.float64).reshape(-1, 2)
