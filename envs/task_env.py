"""The contract every worldmot env keeps, written once: the built-in tasks and the wrapped Gymnasium envs derive
from :class:`TaskEnv`, and recording, evaluation, the policies and the planner rely on nothing else.

make kwargs: ``image_size`` (camera height and width, default 64), ``held_out_instructions`` (the wordings
held out of recording, for evaluation), ``render_mode`` ("rgb_array", or None as Gymnasium's envs default:
then ``render()`` returns None; the observation carries the frames either way).

Observation (LeRobot's env convention), ``observation_space`` a Dict of:
    pixels/top          (H, W, 3) uint8  the fixed camera, H = W = image_size
    agent_pos           (S,) float32     the robot's state (its end effector's position among it)
    environment_state   (E,) float32     privileged object/goal positions, named objects first; the order is
                                         documented by each task
    keypoints           (2K,) float32    image (u, v) in [0, 1] from the top-left corner of the K named objects,
                                         then of the effector

Action: a Box (``action_space``). ``reset`` and ``step`` info: ``instruction`` (str, fixed for the episode),
``is_success`` (bool), ``progress`` (float in [0, 1], also the reward); a task may add its own keys.
``metadata["render_fps"]`` is the control rate (the recordings' fps).

Besides the Gymnasium API: ``instruction`` (the episode's text; also as ``task`` and ``task_description``,
the attributes LeRobot's env utilities read for a policy's language input), ``render()`` (the last frame),
``render_goal()`` (the image of the episode's goal configuration, the state left unchanged) and, where the
task has a scripted expert, ``expert_spec``: (name, kwargs) of it in worldmot.envs.experts (picklable for
vector workers; ``experts.expert_of(env)`` builds it).
"""
from __future__ import annotations

from abc import abstractmethod

import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.render import FastCamera


class TaskEnv(gym.Env):
    """Base class: a subclass sets ``camera``, ``model``, ``data``, ``action_space`` and ``observation_space``
    (see :meth:`contract_space`), and defines the state, keypoints, success and goal configuration."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    camera: FastCamera
    model: mujoco.MjModel
    data: mujoco.MjData

    def __init__(self, image_size: int = 64, held_out_instructions: bool = False, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.held_out_instructions = bool(held_out_instructions)
        self.instruction = ""
        self._frame: np.ndarray | None = None

    # ---- what a task defines (and ``expert_spec`` where it has a scripted expert) -------------------
    @abstractmethod
    def _agent_pos(self) -> np.ndarray:
        """(S,) the robot's state."""

    @abstractmethod
    def _environment_state(self) -> np.ndarray:
        """(E,) privileged positions, named objects first."""

    @abstractmethod
    def _keypoints(self) -> np.ndarray:
        """(2K,) float32 image (u, v) of the named objects, then the effector."""

    @abstractmethod
    def _progress(self) -> tuple[float, bool]:
        """(progress in [0, 1], success) of the current state."""

    @abstractmethod
    def _set_goal_configuration(self) -> None:
        """Move bodies (qpos / mocap_pos) into the goal configuration of this episode."""

    # ---- the contract, shared ------------------------------------------------------------------
    def contract_space(self, state: gym.spaces.Box, environment_state: gym.spaces.Box,
                       keypoints: int) -> gym.spaces.Dict:
        """The observation space of the contract: a top camera at ``image_size``, ``keypoints`` (u, v) pairs."""
        s = self.image_size
        return gym.spaces.Dict(
            {
                "pixels": gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (s, s, 3), np.uint8)}),
                "agent_pos": state,
                "environment_state": environment_state,
                "keypoints": gym.spaces.Box(0.0, 1.0, (2 * keypoints,), np.float32),
            }
        )

    @property
    def task_description(self) -> str:
        """The episode's instruction, under the name LeRobot's env utilities look for first."""
        return self.instruction

    @property
    def task(self) -> str:
        """The episode's instruction, under LeRobot's other name for a policy's language input."""
        return self.instruction

    def render(self):
        """The last frame (H, W, 3) uint8 in render_mode "rgb_array"; None without a render mode, as Gymnasium's
        envs do (the observation carries the frames either way)."""
        if self.render_mode is None:
            gym.logger.warn("render() without a render_mode returns None: make the env with render_mode='rgb_array'")
            return None
        if self._frame is None:
            self._frame = self.camera.render(self.data)
        return self._frame.copy()

    def render_goal(self) -> np.ndarray:
        """(H, W, 3) uint8 image of this episode's goal configuration; the state is left unchanged."""
        qpos, qvel, mocap = self.data.qpos.copy(), self.data.qvel.copy(), self.data.mocap_pos.copy()
        self._set_goal_configuration()
        mujoco.mj_forward(self.model, self.data)
        image = self.camera.render(self.data)
        self.data.qpos[:], self.data.qvel[:], self.data.mocap_pos[:] = qpos, qvel, mocap
        mujoco.mj_forward(self.model, self.data)
        return image

    def close(self):
        self.camera.close()

    def _observation(self) -> dict:
        self._frame = self.camera.render(self.data)
        return {
            "pixels": {"top": self._frame.copy()},
            "agent_pos": self._agent_pos().astype(np.float32),
            "environment_state": self._environment_state().astype(np.float32),
            "keypoints": self._keypoints(),
        }

    def _info(self, progress: float, success: bool, **extra: float) -> dict:
        return {"instruction": self.instruction, "is_success": bool(success), "progress": float(progress), **extra}
