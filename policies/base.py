"""The one Policy protocol: every policy (random, scripted, model, planner) is driven the same way.

    policy.reset(seed=None)              start of an episode (or of a batch of episodes)
    action = policy.act(observation)     observation: the env's observation dict plus "task"
    policy.reasoning                     subtask text(s) of the last act(), or None

Single env: observation arrays have no batch dim, ``observation["task"]`` is a str, ``act`` returns
(action_dim,). Vector env: arrays carry a leading batch dim B, "task" is a list[str] (or an array of
str), ``act`` returns (B, action_dim) and ``reasoning`` is a list[str] (or None).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    reasoning: str | list[str] | None

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, observation: dict[str, Any]) -> np.ndarray: ...


def is_batched(observation: dict[str, Any]) -> bool:
    """True for vector-env observations (agent_pos of shape (B, S))."""
    if "agent_pos" in observation:
        return np.ndim(observation["agent_pos"]) == 2
    return not isinstance(observation.get("task", ""), str)


def batch_size(observation: dict[str, Any]) -> int | None:
    """B for a batched observation, None for a single one."""
    if not is_batched(observation):
        return None
    if "agent_pos" in observation:
        return int(np.shape(observation["agent_pos"])[0])
    return len(observation["task"])


def tasks_of(observation: dict[str, Any]) -> list[str]:
    """observation["task"] as a list of B strings ("" where absent); B = 1 for a single observation."""
    n = batch_size(observation)
    task = observation.get("task", "")
    if n is None:
        return [str(task)]
    if isinstance(task, str):
        return [task] * n
    return [str(t) for t in task]
