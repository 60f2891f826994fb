"""The shared base of the built-in tasks: a top-down planar scene with a kinematic end effector.

The effector is a mocap body: an action is a change of its xy position (scaled by ``max_step``), spread
evenly over the physics substeps of one env step, so the next frame follows from the frame and the
action (no hidden velocity). Objects it touches are pushed through frictionless contacts.

The observation, info and methods are TaskEnv's contract (task_env.py); here environment_state holds
positions in metres on the table and keypoints come from the orthographic top camera, which maps the table
linearly.
"""
from __future__ import annotations

from abc import abstractmethod

import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.render import FastCamera
from worldmot.envs.task_env import TaskEnv

WORKSPACE = 0.45  # the effector stays inside [-WORKSPACE, WORKSPACE]^2
VIEW = 1.0  # the camera shows [-VIEW/2, VIEW/2]^2
EFFECTOR_RADIUS = 0.03
EFFECTOR_Z = 0.05
TIMESTEP = 0.005
FRAME_SKIP = 10  # 0.05 s per env step -> 20 frames per second

# MuJoCo 3.3 (which the metaworld extra pins) names an orthographic camera orthographic="true"; later versions
# projection="orthographic"
ORTHOGRAPHIC = 'projection="orthographic"' if hasattr(mujoco, "mjtProjection") else 'orthographic="true"'

SCENE_HEAD = f"""
<mujoco model="{{name}}">
  <option timestep="{TIMESTEP}" gravity="0 0 0"/>
  <visual>
    <headlight ambient="0.55 0.55 0.55" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <quality shadowsize="0"/>
    <global offwidth="{{size}}" offheight="{{size}}"/>
  </visual>
  <default>
    <geom contype="0" conaffinity="0" condim="1" material="flat"/>
  </default>
  <asset>
    <material name="flat" specular="0" shininess="0" reflectance="0"/>
  </asset>
  <worldbody>
    <camera name="top" pos="0 0 1" xyaxes="1 0 0 0 1 0" {ORTHOGRAPHIC} fovy="{VIEW}"/>
    <geom name="floor" type="plane" size="{VIEW / 2 + 0.1} {VIEW / 2 + 0.1} 0.01" rgba="0.4 0.4 0.4 1"/>
    <geom name="border" type="box" pos="0 0 0.0005" size="{WORKSPACE + EFFECTOR_RADIUS} {WORKSPACE + EFFECTOR_RADIUS} 0.0005"
          rgba="0.82 0.82 0.82 1"/>
    <body name="effector" mocap="true" pos="0 0 {EFFECTOR_Z}">
      <geom name="effector" type="sphere" size="{EFFECTOR_RADIUS}" rgba="0.1 0.1 0.1 1" {{effector_contact}}/>
      {{effector_visual}}
    </body>
"""
# the effector as the camera sees it: a dark disc of 7-8 pixels at 64x64 under the 4-pixel sphere. The sphere
# alone moved farther per action chunk than its own width, so a predicted frame that put it a little off
# scored no better than one that erased it, and the world model learned to erase it
HALO_RADIUS = 0.06


def effector_halo() -> str:
    """MJCF of the effector's halo: drawn only (contype 0 by default), under the sphere and below the blocks."""
    return f'<geom name="effector_halo" type="cylinder" size="{HALO_RADIUS} 0.001" pos="0 0 -0.03" rgba="0.15 0.15 0.15 1"/>'


SCENE_TAIL = """
  </worldbody>
</mujoco>
"""


class TabletopEnv(TaskEnv):
    """Base class; a task defines the scene, the episode sampler, the goal and the success test."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1.0 / (TIMESTEP * FRAME_SKIP)))}
    task_name = ""  # "reach" / "push": selects wordings and the scripted expert
    env_state_dim = 0
    named_objects = 0  # how many objects the instruction names: the first 2 * named_objects of environment_state
    max_step = 0.04  # metres of effector motion per env step at |action| = 1

    def __init__(self, image_size: int = 64, held_out_instructions: bool = False, render_mode: str | None = None):
        super().__init__(image_size, held_out_instructions, render_mode)
        xml = SCENE_HEAD.format(name=self.task_name, size=max(self.image_size, 64), effector_contact=self._effector_contact(),
                                 effector_visual=self._effector_visual())
        self.model = mujoco.MjModel.from_xml_string(xml + self._objects_xml() + SCENE_TAIL)
        self.data = mujoco.MjData(self.model)
        self.camera = FastCamera(self.model, self.image_size, "top", hidden_groups=(3,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = self.contract_space(gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                                                     gym.spaces.Box(-1.0, 1.0, (self.env_state_dim,), np.float32),
                                                     keypoints=self.named_objects + 1)

    # ---- what a task defines -------------------------------------------------------------------
    def _effector_contact(self) -> str:
        return ""

    def _effector_visual(self) -> str:
        """Extra MJCF geoms on the effector body that only show in the camera (no contacts)."""
        return ""

    @abstractmethod
    def _objects_xml(self) -> str:
        """MJCF of the task's bodies, inserted into the worldbody."""

    @abstractmethod
    def _sample_episode(self, rng: np.random.Generator) -> None:
        """Place objects, colour them, set ``self.instruction`` and the effector start (mocap_pos)."""

    @property
    def expert_spec(self) -> tuple[str, dict]:
        """(expert name, constructor kwargs) of the scripted expert for this task; picklable."""
        return self.task_name, {"max_step": self.max_step}

    # ---- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._sample_episode(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        progress, success = self._progress()
        return self._observation(), self._info(progress, success)

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        start = self.data.mocap_pos[0, :2].copy()
        end = np.clip(start + a * self.max_step, -WORKSPACE, WORKSPACE)
        for k in range(1, FRAME_SKIP + 1):
            # moving the mocap body in small increments keeps contacts from tunnelling or exploding
            self.data.mocap_pos[0, :2] = start + (end - start) * (k / FRAME_SKIP)
            mujoco.mj_step(self.model, self.data)
        progress, success = self._progress()
        return self._observation(), float(progress), bool(success), False, self._info(progress, success)

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def effector_xy(self) -> np.ndarray:
        return self.data.mocap_pos[0, :2].copy()

    def _agent_pos(self) -> np.ndarray:
        return self.effector_xy

    def _keypoints(self) -> np.ndarray:
        """(2N+2,) image (u, v) of the named objects, then the effector: the orthographic top camera maps
        the table linearly."""
        xy = np.concatenate([self._environment_state()[: 2 * self.named_objects], self.effector_xy]).reshape(-1, 2)
        uv = np.stack([xy[:, 0] / VIEW + 0.5, 0.5 - xy[:, 1] / VIEW], -1)
        return np.clip(uv, 0.0, 1.0).astype(np.float32).reshape(-1)

    def _set_rgba(self, geom: str, rgba) -> None:
        self.model.geom_rgba[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, geom)] = rgba


def sample_separated(
    rng: np.random.Generator, n: int, low: float, high: float, min_dist: float, avoid: list[np.ndarray] = ()
) -> list[np.ndarray]:
    """``n`` xy points uniform in [low, high]^2, pairwise and from ``avoid`` at least ``min_dist`` apart."""
    points: list[np.ndarray] = []
    for _ in range(10_000):
        p = rng.uniform(low, high, size=2)
        if all(np.linalg.norm(p - q) >= min_dist for q in [*points, *avoid]):
            points.append(p)
            if len(points) == n:
                return points
    raise RuntimeError("could not place objects; the workspace is too small for the separations asked")


def linear_progress(distance: float, tolerance: float, scale: float) -> float:
    """1 at ``distance <= tolerance``, falling linearly to 0 at ``tolerance + scale``."""
    return float(np.clip(1.0 - (distance - tolerance) / scale, 0.0, 1.0))
