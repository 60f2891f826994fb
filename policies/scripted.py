"""The scripted experts of worldmot.envs behind the Policy protocol."""
from __future__ import annotations

from typing import Any

import numpy as np

from worldmot.policies.base import is_batched, tasks_of


class ScriptedPolicy:
    """Wraps an expert ``(agent_pos (B,S), environment_state (B,E), tasks) -> (actions (B,A), subtasks)``.

    Needs "agent_pos" and "environment_state" in the observation (privileged state): it is a data
    generator and a reference, not a pixel policy.
    """

    def __init__(self, expert):
        self.expert = expert
        self.reasoning: str | list[str] | None = None

    def reset(self, seed: int | None = None) -> None:
        self.reasoning = None  # the experts are deterministic and memoryless

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        batched = is_batched(observation)
        pos = np.asarray(observation["agent_pos"], np.float64)
        state = np.asarray(observation["environment_state"], np.float64)
        if not batched:
            pos, state = pos[None], state[None]
        actions, subtasks = self.expert(pos, state, tasks_of(observation))
        if batched:
            self.reasoning = list(subtasks)
            return actions
        self.reasoning = subtasks[0]
        return actions[0]
