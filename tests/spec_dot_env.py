"""A small Gymnasium env for the spec tests, registered on import as ``SpecDot-v0`` (no MuJoCo, no worldmot).

A dot moves in the unit square toward a goal: Dict observation {"goal": (2,), "position": (2,)}, action (2,)
in [-1, 1] moving at most ``MAX_STEP`` per axis, ``info["is_success"]`` within ``SUCCESS`` of the goal and
``info["closeness"]`` in [0, 1]; ``render()`` draws a 48x32 image (wider than high: the spec crops it square).
As a user's own env would, it knows nothing of worldmot: ``--env spec_dot_env:SpecDot-v0`` imports it.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

MAX_STEP = 0.08
SUCCESS = 0.05


class SpecDotEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict({"position": gym.spaces.Box(0.0, 1.0, (2,), np.float64),
                                                  "goal": gym.spaces.Box(0.0, 1.0, (2,), np.float64)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self) -> dict:
        return {"position": self.position.copy(), "goal": self.goal.copy()}

    def _info(self) -> dict:
        d = float(np.linalg.norm(self.position - self.goal))
        return {"is_success": d <= SUCCESS, "closeness": max(0.0, 1.0 - d)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(0.1, 0.9, 2)
        self.goal = self.np_random.uniform(0.1, 0.9, 2)
        return self._obs(), {}  # success only in a step's info, as many envs do

    def step(self, action):
        move = np.clip(np.asarray(action, np.float64), -1.0, 1.0) * MAX_STEP
        self.position = np.clip(self.position + move, 0.0, 1.0)
        info = self._info()
        return self._obs(), -float(np.linalg.norm(self.position - self.goal)), False, False, info

    def render(self):
        image = np.full((32, 48, 3), 30, np.uint8)
        for xy, colour in ((self.goal, (0, 200, 0)), (self.position, (230, 40, 40))):
            u, v = 8 + int(xy[0] * 31), int((1.0 - xy[1]) * 31)
            image[max(v - 2, 0):v + 2, max(u - 2, 0):u + 2] = colour
        return image


if "SpecDot-v0" not in gym.registry:
    gym.register("SpecDot-v0", entry_point=SpecDotEnv, max_episode_steps=30)
