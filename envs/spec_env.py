"""SpecEnv: a registered Gymnasium env, driven by a TaskSpec (envs/spec.py), with TaskEnv's contract.

The inner env runs the task; this class adds the contract of task_env.py: a camera at ``image_size`` (the inner
env's ``render()``, or worldmot's fast renderer on its MuJoCo model), ``agent_pos`` / ``environment_state``
read from the observation (or the MuJoCo state) as the spec states, keypoints (MuJoCo bodies or sites projected
into the camera), an instruction, success and progress from the step's info (or reward), ``terminated`` on
success, action repeat and ``render_goal()`` where the spec has a goal recipe. The inner env's reward is
kept in ``info["env_reward"]`` (summed over the repeated steps).

A spec that does not fit the env fails here, in ``__init__``, as one WorldmotError naming the field: an
unknown id, a camera the model does not have, a state key the observation does not have, a body that does
not exist, a success key the first reset/step info lacks (``probe``: a reset and one step, done once by
worldmot.envs.make before anything is written).
"""
from __future__ import annotations

import importlib
from typing import Callable

import cv2
import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.projection import project_points
from worldmot.envs.render import FastCamera
from worldmot.envs.sources import Source, compile_source
from worldmot.envs.spec import TaskSpec, parse_slice
from worldmot.envs.task_env import TaskEnv
from worldmot.errors import WorldmotError

SUCCESS_KEYS = ("is_success", "success")


def load_hook(path: str, field_name: str) -> Callable:
    """The function named by "module:function"; a one-line error where it is not there."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise WorldmotError(f"{field_name}={path!r}: no such function ({err})") from None


def make_inner(gym_id: str, render_mode: str | None, make_kwargs: dict) -> gym.Env:
    """The unwrapped Gymnasium env (the SpecEnv's own registration carries the time limit)."""
    try:
        return gym.make(gym_id, render_mode=render_mode, disable_env_checker=True, **make_kwargs).unwrapped
    except gym.error.Error as err:
        raise WorldmotError(f"gym_id={gym_id!r}: {str(err).splitlines()[0]}") from None


def is_mujoco(env: gym.Env) -> bool:
    return isinstance(getattr(env, "model", None), mujoco.MjModel) and hasattr(env, "data")


class SpecEnv(TaskEnv):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # render_fps: set per spec in __init__

    def __init__(self, spec: TaskSpec, image_size: int | None = None, held_out_instructions: bool = False,
                 render_mode: str | None = None):
        super().__init__(image_size or spec.image_size, held_out_instructions, render_mode)
        self.task_spec = spec
        self.inner = self._make_inner(spec)
        self.mujoco = is_mujoco(self.inner)
        if self.mujoco:
            self.model, self.data = self.inner.model, self.inner.data
        if spec.setup_hook:
            load_hook(spec.setup_hook, "setup_hook")(self)
        self.camera = self._make_camera(spec.camera) if self._uses_mujoco_camera() else None
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": self._fps()}
        self._state = [compile_source(e, "state", self) for e in spec.state]
        self._env_state = [compile_source(e, "environment_state", self) for e in spec.environment_state]
        self._keypoint_sites = [self._keypoint(name) for name in spec.keypoints]
        self._score = load_hook(spec.success, "success") if ":" in spec.success else None
        self._set_goal = self._goal_recipe()
        self.has_goal_image = self._set_goal is not None
        if spec.expert:
            self.expert_spec = (spec.expert, dict(spec.expert_kwargs))
        self.action_space = self.inner.action_space
        self._obs, self._last_info, self._success_key = None, {}, None
        self._inner_obs = self.inner.observation_space.sample()  # sources are sized on a sample observation
        unbounded = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = self.contract_space(unbounded(len(self._agent_pos())),
                                                     unbounded(len(self._environment_state())),
                                                     keypoints=len(self._keypoint_sites))

    # ---- construction --------------------------------------------------------------------------
    def _make_inner(self, spec: TaskSpec) -> gym.Env:
        if spec.camera.source == "render":
            return make_inner(spec.gym_id, "rgb_array", spec.make_kwargs)
        inner = make_inner(spec.gym_id, None, spec.make_kwargs)
        if spec.camera.source == "mujoco" and not is_mujoco(inner):
            raise WorldmotError(f"camera.source=mujoco: {spec.gym_id} is not a MuJoCo env (use camera.source=render)")
        if spec.camera.source == "auto" and not is_mujoco(inner):  # its own render(), which needs the mode
            inner.close()
            return make_inner(spec.gym_id, "rgb_array", spec.make_kwargs)
        return inner

    def _uses_mujoco_camera(self) -> bool:
        return self.mujoco and self.task_spec.camera.source != "render"

    def _make_camera(self, cam) -> FastCamera:
        if cam.name:
            if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cam.name) < 0:
                names = [self.model.camera(i).name for i in range(self.model.ncam)]
                raise WorldmotError(f"camera.name={cam.name!r}: {self.task_spec.gym_id} has no such camera "
                                    f"(its cameras: {names or 'none'}; or a free camera: leave name empty)")
            return FastCamera(self.model, self.image_size, cam.name, tuple(cam.hidden_groups))
        free = mujoco.MjvCamera()
        free.type = mujoco.mjtCamera.mjCAMERA_FREE
        free.lookat[:] = cam.lookat if cam.lookat is not None else self.model.stat.center
        free.distance = cam.distance or 1.5 * float(self.model.stat.extent)
        free.azimuth, free.elevation = cam.azimuth, cam.elevation
        return FastCamera(self.model, self.image_size, free, tuple(cam.hidden_groups))

    def _fps(self) -> int:
        if self.task_spec.render_fps:
            return int(self.task_spec.render_fps)
        dt = getattr(self.inner, "dt", None)
        if not dt:
            raise WorldmotError(f"{self.task_spec.gym_id} has no dt: set render_fps (its control rate) in the spec")
        return max(1, int(round(1.0 / (float(dt) * self.task_spec.frame_skip))))

    def _keypoint(self, name: str) -> tuple[str, int]:
        if self.camera is None:
            raise WorldmotError(f"keypoints: {self.task_spec.gym_id} is not rendered by a MuJoCo camera (keypoints "
                                "are bodies or sites of a MuJoCo model projected into camera.source=mujoco)")
        kind, _, bare = name.rpartition(":")
        kind = kind or "body"
        obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "site": mujoco.mjtObj.mjOBJ_SITE}.get(kind)
        index = mujoco.mj_name2id(self.model, obj, bare) if obj is not None else -1
        if index < 0:
            raise WorldmotError(f"keypoints entry {name!r}: {self.task_spec.gym_id} has no {kind} {bare!r}")
        return kind, index

    def _goal_recipe(self) -> Callable[["SpecEnv"], None] | None:
        goal = self.task_spec.goal
        if not (goal.qpos or goal.hook):
            return None
        if not self.mujoco:
            raise WorldmotError(f"goal: {self.task_spec.gym_id} is not a MuJoCo env (a goal recipe moves its "
                                "MuJoCo state)")
        if goal.hook:
            return load_hook(goal.hook, "goal.hook")
        copies = []
        for recipe in goal.qpos:
            dst, src = (parse_slice(s.strip()) for s in recipe.split("="))
            if len(self.data.qpos[dst]) != len(self.data.qpos[src]) or not len(self.data.qpos[dst]):
                raise WorldmotError(f"goal.qpos entry {recipe!r}: the slices of qpos ({self.model.nq}) differ in "
                                    "length or are empty")
            copies.append((dst, src))

        def copy_qpos(env: SpecEnv) -> None:
            for dst, src in copies:
                env.data.qpos[dst] = env.data.qpos[src]
        return copy_qpos

    # ---- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._inner_obs, info = self.inner.reset(seed=seed, options=options)
        wordings = self.task_spec.instructions
        if self.held_out_instructions and self.task_spec.held_out_instructions:
            wordings = self.task_spec.held_out_instructions
        self.instruction = wordings[int(self.np_random.integers(len(wordings)))]
        self._last_info = info
        progress, success = self._score_now(info, 0.0, first=True)
        return self._observation(), self._info(progress, success, env_reward=0.0)

    def step(self, action):
        env_reward, terminated, truncated = 0.0, False, False
        for _ in range(self.task_spec.frame_skip):
            # MuJoCo's controls are float64: the inner env's reward terms see the action as its data will
            inner_action = np.asarray(action, dtype=np.float64) if self.mujoco else action
            self._inner_obs, reward, terminated, truncated, info = self.inner.step(inner_action)
            env_reward += float(reward)
            self._last_info = info
            progress, success = self._score_now(info, float(reward))
            if terminated or truncated or success:
                break
        done = bool(terminated) or (success and self.task_spec.terminate_on_success)
        return (self._observation(), float(progress), done, bool(truncated),
                self._info(progress, success, env_reward=env_reward))

    def render(self):
        if self.camera is not None:
            return super().render()
        if self._frame is None:
            self._frame = self._render_inner()
        return self._frame.copy()

    def render_goal(self) -> np.ndarray:
        if self._set_goal is None:
            raise WorldmotError(f"{self.task_spec.gym_id}: the spec has no goal recipe (no goal image)")
        return super().render_goal()

    def close(self):
        if self.camera is not None:
            self.camera.close()
        self.inner.close()

    # ---- the contract ----------------------------------------------------------------------------
    def _observation(self) -> dict:
        if self.camera is not None:
            return super()._observation()
        self._frame = self._render_inner()
        return {"pixels": {"top": self._frame.copy()}, "agent_pos": self._agent_pos().astype(np.float32),
                "environment_state": self._environment_state().astype(np.float32), "keypoints": self._keypoints()}

    def _render_inner(self) -> np.ndarray:
        """(S, S, 3) uint8: the inner env's render(), center-cropped to a square and resized (area)."""
        frame = self.inner.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] < 3:
            raise WorldmotError(f"{self.task_spec.gym_id}: render() in rgb_array mode gave "
                                f"{getattr(frame, 'shape', type(frame).__name__)} (expected an (H, W, 3) image)")
        h, w = frame.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = np.ascontiguousarray(frame[top:top + side, left:left + side, :3], dtype=np.uint8)
        if side == self.image_size:
            return square
        return cv2.resize(square, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)

    def _agent_pos(self) -> np.ndarray:
        return self._read(self._state)

    def _environment_state(self) -> np.ndarray:
        return self._read(self._env_state) if self._env_state else np.zeros(0, np.float64)

    def _read(self, sources: list[Source]) -> np.ndarray:
        return np.concatenate([s(self._inner_obs) for s in sources])

    def _keypoints(self) -> np.ndarray:
        if not self._keypoint_sites:
            return np.zeros(0, np.float32)
        points = np.stack([(self.data.xpos if kind == "body" else self.data.site_xpos)[i]
                           for kind, i in self._keypoint_sites])
        return project_points(points, self.camera, self.model, self.data).reshape(-1)

    def _set_goal_configuration(self) -> None:
        self._set_goal(self)

    def _progress(self) -> tuple[float, bool]:
        return self._score_now(self._last_info, 0.0)

    def _score_now(self, info: dict, reward: float, first: bool = False) -> tuple[float, bool]:
        """(progress in [0, 1], success) of the current state, from the hook or the step's info and reward."""
        if self._score is not None:
            progress, success = self._score(self)
            return float(progress), bool(success)
        success = self._success_of(info, first)
        kind = self.task_spec.progress
        if kind == "":
            return float(success), success
        if kind == "reward":
            lo, hi = self.task_spec.reward_range
            progress = (reward - lo) / (hi - lo)
        else:
            key = kind.split(":", 1)[1]
            if key not in info:
                if first:
                    return float(success), success
                raise WorldmotError(f"progress={kind!r}: the step's info has no {key!r} (its keys: {sorted(info)})")
            progress = float(info[key])
        return (1.0 if success else float(np.clip(progress, 0.0, 1.0))), success

    def _success_of(self, info: dict, first: bool) -> bool:
        key = self.task_spec.success
        if key == "auto":
            key = self._success_key or next((k for k in SUCCESS_KEYS if k in info), None)
            if key is None:
                return False
            self._success_key = key
        if key not in info:
            if first:  # many envs report success only in a step's info
                return False
            raise WorldmotError(f"success={key!r}: the step's info has no such key (its keys: {sorted(info)})")
        return bool(np.asarray(info[key]).any())


def probe(env: SpecEnv) -> None:
    """A reset and one step: what the spec names in the info must be there (errors before anything is written)."""
    env.reset(seed=0)
    env.step(env.action_space.sample())
