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

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        n = batch_size(observation)
        shape = self.action_space.shape if n is None else (n, *self.action_space.shape)
        low = np.broadcast_to(self.action_space.low, self.action_space.shape)
        high = np.broadcast_to(self.action_space.high, self.action_space.shape)
        return self.rng.uniform(low, high, size=shape).astype(self.action_space.dtype)
