"""Entity paths shared by every worldmot recording: one subtree per episode."""
from __future__ import annotations

import re


def episode_path(index: int) -> str:
    """``episode_003``: the subtree of episode 3 (zero-padded so that the viewer sorts episodes in order)."""
    return f"episode_{int(index):03d}"


def entity_part(name: str) -> str:
    """A name usable as one entity-path part: letters, digits, ``_``, ``-`` and ``.``; anything else is ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "_"
