"""MPC with the world model behind the Policy protocol: plan, execute ``plan.execute`` chunks, replan."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldmot.model.world_model import WorldModel
from worldmot.planning import Planner, PlannerConfig
from worldmot.policies.chunked import ChunkedPolicy


@dataclass
class PlanTrace:
    """What one replanning step decided and looked at, for B envs (kept when ``PlannerPolicy.trace``)."""

    step: int  # env step of the decision (steps since reset)
    # (B, H, S, Nc*S, 3) uint8: the best candidate's imagined frames, one per chunk, its Nc cameras side by side
    imagined: np.ndarray
    costs: np.ndarray  # (iterations, B, N): every iteration's candidate costs (minus the scores)
    step_scores: np.ndarray  # (B, H): the best candidate's per-chunk score (predicted progress for cost=progress)
    chosen: np.ndarray  # (B, L, A): the actions it will execute

    def for_env(self, b: int) -> dict[str, Any]:
        return {"imagined": self.imagined[b], "costs": self.costs[:, b], "step_scores": self.step_scores[b],
                "chosen": self.chosen[b]}


class PlannerPolicy(ChunkedPolicy):
    """With ``cost="goal"`` the observation must carry "goal" (B, H, W, 3) images (``env.render_goal()``); a
    model of several cameras needs a dict of them, one per camera (the keys of observation["pixels"]), or one
    image of them side by side, left to right, as the model draws them (a dataset's goals: DatasetStarts).

    ``trace=True`` keeps a :class:`PlanTrace` per replanning step in ``traces`` (cleared by reset) for
    rollout recordings.
    """

    def __init__(self, model: WorldModel, cfg: PlannerConfig, low: np.ndarray, high: np.ndarray,
                 camera: str | None = None, use_state: bool = True, trace: bool = False):
        super().__init__(model, camera, use_state)
        self.planner = Planner(model, cfg, low, high)
        self.plan_seconds: list[float] = []  # wall time of every replanning step
        self.trace = trace
        self.traces: list[PlanTrace] = []

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.planner.reset(seed)
        self.traces = []

    def decide(self, tasks, frames, states, observation: dict[str, Any]):
        goals = observation.get("goal")
        if isinstance(goals, dict):
            goals = [self._batched(goals[name]) for name in self.camera]
        elif goals is not None and isinstance(self.camera, list):  # one image, the cameras side by side
            goals = list(np.split(self._batched(goals), len(self.camera), axis=-2))
        elif goals is not None:
            goals = self._batched(goals)
        actions = self.planner.plan(tasks, frames, states, goals)
        self.plan_seconds.append(self.planner.last.seconds)
        if self.trace:
            self.traces.append(self._trace(actions))
        return actions, None

    @staticmethod
    def _batched(images) -> np.ndarray:
        """(H, W, 3) or (B, H, W, 3) images -> (B, H, W, 3)."""
        return np.asarray(images)[None] if np.ndim(images) == 3 else np.asarray(images)

    @torch.no_grad()
    def _trace(self, actions: np.ndarray) -> PlanTrace:
        info = self.planner.last
        B = actions.shape[0]
        rows = torch.arange(B)
        best = torch.stack([f[rows, info.best] for f in info.frames], 1)  # (B, H, Nc*P, Dp)
        pixels = self.model.detokenize_frames(best.flatten(0, 1)).float()  # (B*H, 3, S, Nc*S) in [-1, 1]
        imagined = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return PlanTrace(step=self.step, imagined=imagined.view(B, len(info.frames), *imagined.shape[1:]).cpu().numpy(),
                         costs=(-info.iteration_scores).numpy(),
                         step_scores=info.step_scores.float().cpu()[rows, info.best].numpy(),
                         chosen=actions)
