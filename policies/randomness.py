"""One random generator per (sub-)env row, seeded by the episode that row plays.

A policy's randomness for episode i (exploration noise, random actions) must depend on seed + i alone: not
on which worker of a vector env plays it, nor on the episodes that worker played before, nor on where a
recording was interrupted and resumed. ``reset(seed)`` starts a batch: row b draws from seed + b (a single
env: row 0 from seed, as before). ``reset_rows({k: seed})`` restarts the rows whose sub-env started a new
episode (the stepping engine's refill schedule calls the policy's ``reset_envs`` with them).
"""
from __future__ import annotations

import numpy as np


class EnvRandomness:
    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._generators: dict[int, np.random.Generator] = {}
        self.started: set[int] = set()  # rows restarted since the policy last acted

    def reset(self, seed: int | None = None) -> None:
        """A new batch of episodes; without a seed the generators run on (as one unseeded generator would)."""
        if seed is not None:
            self.seed, self._generators = seed, {}
        self.started.clear()

    def reset_rows(self, seeds: dict[int, int | None]) -> None:
        for k, seed in seeds.items():
            self._generators[k] = np.random.default_rng(seed)
            self.started.add(k)

    def generators(self, rows: int) -> list[np.random.Generator]:
        for b in range(rows):
            if b not in self._generators:
                self._generators[b] = np.random.default_rng(None if self.seed is None else self.seed + b)
        return [self._generators[b] for b in range(rows)]
