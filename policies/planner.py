"""MPC with the world model behind the Policy protocol: plan, execute ``plan.execute`` chunks, replan."""
from __future__ import annotations

from typing import Any

import numpy as np

from worldmot.model.world_model import WorldModel
from worldmot.planning import Planner, PlannerConfig
from worldmot.policies.chunked import ChunkedPolicy


class PlannerPolicy(ChunkedPolicy):
    """With ``cost="goal"`` the observation must carry "goal" (B, H, W, 3) images (``env.render_goal()``)."""

    def __init__(self, model: WorldModel, cfg: PlannerConfig, low: np.ndarray, high: np.ndarray,
                 camera: str | None = None, use_state: bool = True):
        super().__init__(model, camera, use_state)
        self.planner = Planner(model, cfg, low, high)
        self.plan_seconds: list[float] = []  # wall time of every replanning step

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.planner.reset(seed)

    def decide(self, tasks, frames, states, observation: dict[str, Any]):
        goals = observation.get("goal")
        if goals is not None and np.ndim(goals) == 3:
            goals = np.asarray(goals)[None]
        actions = self.planner.plan(tasks, frames, states, goals)
        self.plan_seconds.append(self.planner.last.seconds)
        return actions, None
