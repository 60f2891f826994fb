"""Uniformly random actions in the action space, seeded."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldmot.policies.base import batch_size


class RandomPolicy:
    """Samples uniformly in a Box action space (the single-env space, also for vector envs)."""

    def __init__(self, action_space: gym.spaces.Box, seed: int | None = None):
        self.action_space = action_space
        self.reasoning: str | list[str] | None = None
        self.rng = np.random.default_rng(seed)
        self._rows: dict[int, np.random.Generator] | None = None  # per sub-env, once reset_envs was called

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng, self._rows = np.random.default_rng(seed), None

    def reset_envs(self, seeds: dict[int, int | None]) -> None:
        """Sub-envs ``k`` start an episode seeded ``seeds[k]``: their actions come from that seed alone."""
        self._rows = self._rows or {}
        self._rows.update({k: np.random.default_rng(s) for k, s in seeds.items()})

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        n = batch_size(observation)
        shape = self.action_space.shape if n is None else (n, *self.action_space.shape)
        low = np.broadcast_to(self.action_space.low, self.action_space.shape)
        high = np.broadcast_to(self.action_space.high, self.action_space.shape)
        if n is None or self._rows is None:
            return self.rng.uniform(low, high, size=shape).astype(self.action_space.dtype)
        rows = [self._rows.setdefault(b, np.random.default_rng()) for b in range(n)]
        return np.stack([g.uniform(low, high) for g in rows]).astype(self.action_space.dtype)
