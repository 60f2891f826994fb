"""Gymnasium's own MuJoCo envs (Reacher-v5, Pusher-v5) with the contract of the built-in tasks.

The wrapped env runs the physics; this class adds TaskEnv's contract (task_env.py): a fixed top camera at
``image_size`` (our fast renderer on the wrapped model, shadows off), the observations, an instruction, a
success test, a dense progress in [0, 1] that is also the reward (the original reward is kept in
``info["env_reward"]``), ``terminated`` on success and ``render_goal()``.

Reacher-v5 (torque control of a 2-link arm, action (2,) in [-1, 1]):
    agent_pos (8,)          [cos q0, cos q1, sin q0, sin q1, dq0, dq1, fingertip xy] (the end effector's
                            position, as robot states carry it: a world model can read it off a frame)
    environment_state (4,)  [target xy, fingertip xy]
    keypoints (4,)          image (u, v) in [0, 1] of the target, then the fingertip
    success                 fingertip within 0.02 m of the target
    progress                1 at success, linear in the distance, 0 at 0.22 m
Pusher-v5 (torque control of a 7-DoF arm, action (7,) in [-2, 2]):
    agent_pos (14,)         [qpos of the 7 arm joints, their qvel]
    environment_state (6,)  [object xy, goal xy, arm tip xy]
    keypoints (4,)          image (u, v) in [0, 1] of the object, then the arm tip
    success                 object centre within 0.05 m of the goal centre (xy)
    progress                1 at success, else 0.2 * (tip close to the object) + 0.8 * (object close to goal)
The target (Reacher) and fingertip are drawn larger than in the original model (visual geoms only; the
physics is unchanged) so that they are visible at 64x64.
"""
from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.experts import two_link_ik
from worldmot.envs.render import FastCamera
from worldmot.envs.tabletop import linear_progress
from worldmot.envs.task_env import TaskEnv

REACHER_TEMPLATES = ["reach the target", "move the fingertip to the target", "touch the red target", "go to the target"]
REACHER_HELD_OUT = ["bring the arm's tip onto the red dot", "put the fingertip on the target"]
PUSHER_TEMPLATES = ["push the object to the goal", "push the cylinder onto the goal", "move the object to the goal"]
PUSHER_HELD_OUT = ["slide the puck over to the goal", "get the object onto the target"]


def project(points: np.ndarray, camera: mujoco.MjvCamera, fovy: float) -> np.ndarray:
    """(P, 3) world points -> (P, 2) float32 image (u, v) in [0, 1] from the top-left corner, as a square
    render from the free ``camera`` (vertical field of view ``fovy`` degrees) shows them; clipped to the image."""
    az, el = np.radians(camera.azimuth), np.radians(camera.elevation)
    forward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    up = np.array([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)])
    right = np.cross(forward, up)
    rel = points - (np.asarray(camera.lookat) - camera.distance * forward)
    scale = 2.0 * np.tan(np.radians(fovy) / 2.0) * (rel @ forward)
    uv = np.stack([0.5 + (rel @ right) / scale, 0.5 - (rel @ up) / scale], -1)
    return np.clip(uv, 0.0, 1.0).astype(np.float32)


class WrappedMujocoTask(TaskEnv):
    """Base class: ``gym_id`` names the Gymnasium env, subclasses define state, success and goal."""

    gym_id = ""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}  # fps: 1 / the wrapped env's dt, set per task
    templates: list[str] = []
    held_out: list[str] = []
    camera_lookat = (0.0, 0.0, 0.0)
    camera_distance = 1.0
    keypoint_bodies: tuple[str, ...] = ()  # the named objects, then the effector (the tabletop tasks' order)

    def __init__(self, image_size: int = 64, held_out_instructions: bool = False, render_mode: str | None = "rgb_array"):
        super().__init__(image_size, held_out_instructions, render_mode)
        self.inner = gym.make(self.gym_id).unwrapped  # our registration carries the time limit
        self.model, self.data = self.inner.model, self.inner.data
        self._enlarge_visuals()
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = self.camera_lookat
        cam.distance, cam.azimuth, cam.elevation = self.camera_distance, 90.0, -90.0
        self.camera = FastCamera(self.model, self.image_size, cam)
        assert self.metadata["render_fps"] == int(round(1.0 / self.inner.dt)), "render_fps out of date"
        self.action_space = self.inner.action_space
        unbounded = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = self.contract_space(unbounded(len(self._agent_pos())),
                                                     unbounded(len(self._environment_state())),
                                                     keypoints=len(self.keypoint_bodies))

    def _enlarge_visuals(self) -> None:
        """Make small bodies visible at 64x64 (visual geoms only)."""

    # ---- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.inner.reset(seed=seed)
        options = self.held_out if self.held_out_instructions else self.templates
        self.instruction = options[int(self.np_random.integers(len(options)))]
        progress, success = self._progress()
        return self._observation(), self._info(progress, success, env_reward=0.0)

    def step(self, action):
        _, env_reward, _, _, _ = self.inner.step(np.asarray(action, dtype=np.float64))
        progress, success = self._progress()
        return self._observation(), float(progress), bool(success), False, self._info(progress, success, env_reward=float(env_reward))

    def close(self):
        super().close()
        self.inner.close()

    # ---- helpers -------------------------------------------------------------------------------
    def _keypoints(self) -> np.ndarray:
        """(2K,) image (u, v) of ``keypoint_bodies``: MuJoCo's pinhole projection of the free camera."""
        points = np.stack([self.data.body(b).xpos for b in self.keypoint_bodies])
        return project(points, self.camera.camera, float(self.model.vis.global_.fovy)).reshape(-1)

    def _xy(self, body: str) -> np.ndarray:
        return self.data.body(body).xpos[:2].copy()


class ReacherTask(WrappedMujocoTask):
    gym_id = "Reacher-v5"
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    templates, held_out = REACHER_TEMPLATES, REACHER_HELD_OUT
    camera_distance = 0.75  # the arena's walls at +-0.3 m fill the view
    success_distance = 0.02
    links = (0.1, 0.11)
    keypoint_bodies = ("target", "fingertip")

    @property
    def expert_spec(self) -> tuple[str, dict]:
        return "reacher", {"link1": self.links[0], "link2": self.links[1]}

    def _enlarge_visuals(self) -> None:
        self.model.geom("target").size[0] = 0.02
        self.model.geom("fingertip").size[0] = 0.015

    def _agent_pos(self) -> np.ndarray:
        q, qd = self.data.qpos[:2], self.data.qvel[:2]
        return np.concatenate([np.cos(q), np.sin(q), qd, self._xy("fingertip")])

    def _environment_state(self) -> np.ndarray:
        return np.concatenate([self._xy("target"), self._xy("fingertip")])

    def _progress(self) -> tuple[float, bool]:
        d = float(np.linalg.norm(self._xy("target") - self._xy("fingertip")))
        success = d <= self.success_distance
        return (1.0 if success else linear_progress(d, self.success_distance, 0.2)), success

    def _set_goal_configuration(self) -> None:
        # inverse kinematics of the 2-link arm (elbow on the side it is now): the fingertip on the target
        x, y = self._xy("target")
        self.data.qpos[:2] = two_link_ik(float(x), float(y), *self.links, elbow_sign=self.data.qpos[1])
        self.data.qvel[:2] = 0.0


class PusherTask(WrappedMujocoTask):
    gym_id = "Pusher-v5"
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    templates, held_out = PUSHER_TEMPLATES, PUSHER_HELD_OUT
    camera_lookat = (0.4, -0.2, -0.3)  # the table area where the object, the goal and the arm move
    camera_distance = 1.5
    success_distance = 0.05
    keypoint_bodies = ("object", "tips_arm")

    def _agent_pos(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:7], self.data.qvel[:7]])

    def _environment_state(self) -> np.ndarray:
        return np.concatenate([self._xy("object"), self._xy("goal"), self._xy("tips_arm")])

    def _progress(self) -> tuple[float, bool]:
        obj, goal, tip = self._xy("object"), self._xy("goal"), self._xy("tips_arm")
        d_goal = float(np.linalg.norm(obj - goal))
        if d_goal <= self.success_distance:
            return 1.0, True
        near = linear_progress(float(np.linalg.norm(tip - obj)), 0.08, 0.6)
        moved = linear_progress(d_goal, self.success_distance, 0.4)
        return 0.2 * near + 0.8 * moved, False

    def _set_goal_configuration(self) -> None:
        # object and goal bodies sit at the same xy in the model, so equal slide positions overlay them
        self.data.qpos[-4:-2] = self.data.qpos[-2:]
        self.data.qvel[-4:-2] = 0.0
