"""Fault injection for the crash-consistency tests: count the crash points of a run, then kill it at one."""
from __future__ import annotations

from typing import Callable

import numpy as np

import worldmot.io as wio


class CrashPoints:
    """``FAULT_HOOK`` that records every crash point it passes and raises ``Killed`` at number ``kill_at``
    (1-based; 0: never)."""

    def __init__(self, kill_at: int = 0):
        self.kill_at, self.seen = kill_at, []

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        if len(self.seen) == self.kill_at:
            raise wio.Killed(name)


def run_killed_at(monkeypatch, kill_at: int, run: Callable[[], object]) -> str | None:
    """Run ``run`` with a kill at crash point ``kill_at``; returns the point's name (None: it finished)."""
    hook = CrashPoints(kill_at)
    monkeypatch.setattr(wio, "FAULT_HOOK", hook)
    try:
        run()
        return None
    except wio.Killed as k:
        return str(k)
    finally:
        monkeypatch.setattr(wio, "FAULT_HOOK", None)


def count_points(monkeypatch, run: Callable[[], object]) -> list[str]:
    hook = CrashPoints()
    monkeypatch.setattr(wio, "FAULT_HOOK", hook)
    try:
        run()
    finally:
        monkeypatch.setattr(wio, "FAULT_HOOK", None)
    return hook.seen


def assert_same_dataset(a, b) -> None:
    """Two readers hold the same episodes: lengths, every column's values, every frame, and the stats."""
    assert a.num_episodes == b.num_episodes and a.tasks == b.tasks
    for ep in range(a.num_episodes):
        ta, tb = a.episode_table(ep), b.episode_table(ep)
        assert ta.keys() == tb.keys()
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key], err_msg=f"episode {ep} column {key}")
        for cam in a.camera_keys:
            np.testing.assert_array_equal(a.episode_frames(ep, cam), b.episode_frames(ep, cam))
    assert a.stats.keys() == b.stats.keys()
    for feat in a.stats:
        for stat in a.stats[feat]:
            np.testing.assert_array_equal(a.stats[feat][stat], b.stats[feat][stat], err_msg=f"stats {feat} {stat}")
