"""Farama's Meta-World v3 tasks with worldmot's env contract (TaskEnv, task_env.py); the ``metaworld`` extra.

    gym.make("metaworld/drawer-open-v3")     one task
    gym.make("metaworld/MT10")               the ten MT10 tasks: the episode reset with seed s plays task s % 10

Meta-World runs the physics (its Sawyer arm, action (4,) in [-1, 1]: hand xyz delta and gripper) and judges
success (``info["success"]``); this class adds the contract:
    pixels/top         a free camera facing the robot across the table (FastCamera: shadows, reflections and
                       skybox off; the Sawyer's pedestal, torso and head hidden, ~15% of a render)
    agent_pos (4,)          hand xyz, gripper opening
    environment_state (40,) Meta-World's raw observation (39: hand, gripper, two objects' poses, the previous
                            frame's 18, goal xyz) then the task's index in metaworld_tasks.TASKS: what the
                            scripted expert (Meta-World's own policy, metaworld_expert.py) reads
    keypoints (6,)          image (u, v) of the object, the goal, then the hand
    progress                Meta-World's dense reward / 10 (1 at success), also the reward; Meta-World's
                            reward is kept in ``info["env_reward"]``, the task's name in ``info["task"]``
Object and goal positions are Meta-World's evaluation tasks: ``metaworld.MT1(task, seed=task_set_seed)``
makes 50 (seeded, as MT10 does per task) and the episode's seed picks one; another ``task_set_seed``
gives 50 other positions. ``frame_skip`` repeats each action that many Meta-World steps with one render
per decision (default 4: 20 decisions/s; Meta-World's experts keep their success at 1-5, BENCHMARKS.md);
an episode has Meta-World's 500 steps (125 decisions at 4). The goal image is the end of Meta-World's expert run from this episode's start on a twin of
the env (the hand on the goal for reach, the drawer open for drawer-open, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.projection import project
from worldmot.envs.metaworld_expert import RAW, MetaWorldExpert
from worldmot.envs.metaworld_tasks import TASKS, group_of, wordings
from worldmot.envs.render import FastCamera
from worldmot.envs.task_env import TaskEnv
from worldmot.errors import WorldmotError

EXTRA_HINT = "Meta-World is an optional extra: pip install -e \".[metaworld]\" (metaworld==3.1.1, mujoco 3.3.0)"
CAMERA = {"lookat": (0.0, 0.7, 0.1), "distance": 1.15, "azimuth": -120.0, "elevation": -35.0}
# the Sawyer's parts that stay still behind the arm: not drawn (geom groups 3-5 are off in MjvOption)
HIDDEN_BODIES = ("controller_box", "head", "pedestal", "pedestal_feet", "screen", "torso", "right_arm_base_link")
HIDDEN_GROUP = 5
EPISODE_STEPS = 500  # Meta-World's max_path_length, in its own steps
# action repeat: Meta-World's experts keep their success at 4 (BENCHMARKS.md), 20 decisions/s as the built-in tasks
FRAME_SKIP = 4


def import_metaworld():
    try:
        import metaworld
    except ImportError as err:
        raise WorldmotError(f"{EXTRA_HINT} ({err})") from None
    return metaworld


@dataclass
class TaskSim:
    """One Meta-World task: its env, its evaluation tasks (positions) and a camera on its model."""

    name: str
    env: Any  # metaworld.sawyer_xyz_env.SawyerXYZEnv
    tasks: list  # metaworld.types.Task, Meta-World's MT1 set for this task
    camera: FastCamera
    twin: Any = None  # a second env for the goal image, made on first use

    @classmethod
    def make(cls, name: str, image_size: int, task_set_seed: int) -> "TaskSim":
        metaworld = import_metaworld()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env = ALL_V3_ENVIRONMENTS[name]()  # render_mode None: worldmot's camera renders
        hide_bodies(env.model)
        return cls(name, env, metaworld.MT1(name, seed=task_set_seed).train_tasks,
                   FastCamera(env.model, image_size, free_camera(), hidden_groups=(HIDDEN_GROUP,)))

    def close(self) -> None:
        self.camera.close()
        for env in (self.env, self.twin):
            if env is not None:
                env.close()


def free_camera() -> mujoco.MjvCamera:
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = CAMERA["lookat"]
    cam.distance, cam.azimuth, cam.elevation = CAMERA["distance"], CAMERA["azimuth"], CAMERA["elevation"]
    return cam


def hide_bodies(model: mujoco.MjModel) -> None:
    """Move the visual geoms of HIDDEN_BODIES to HIDDEN_GROUP (drawing only; physics is unchanged)."""
    for g in range(model.ngeom):
        if model.body(model.geom_bodyid[g]).name in HIDDEN_BODIES:
            model.geom_group[g] = HIDDEN_GROUP


class MetaWorldTask(TaskEnv):
    """Meta-World v3 task(s) ``tasks`` (names of metaworld_tasks.TASKS); see the module doc."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # set per instance: 80 Hz / frame_skip

    def __init__(self, tasks: Sequence[str] = ("reach-v3",), image_size: int = 64, held_out_instructions: bool = False,
                 render_mode: str | None = None, frame_skip: int = FRAME_SKIP, task_set_seed: int = 0,
                 pixels: bool = True):
        super().__init__(image_size, held_out_instructions, render_mode)
        unknown = [t for t in tasks if t not in TASKS]
        if not tasks or unknown or frame_skip < 1:
            raise WorldmotError(f"Meta-World tasks {list(tasks)} frame_skip {frame_skip}: expected names of "
                                f"Meta-World v3 tasks (e.g. reach-v3) and frame_skip >= 1")
        self.tasks, self.frame_skip, self.task_set_seed = tuple(tasks), int(frame_skip), int(task_set_seed)
        self.pixels = bool(pixels)  # False: state-only runs (the wrapper's checks), black frames, no rendering
        self._sims: dict[str, TaskSim] = {}
        self._sim = self._sim_of(self.tasks[0])
        self._raw = np.zeros(RAW)
        self._goal_qpos: tuple[np.ndarray, ...] | None = None
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / (self._sim.env.dt * self.frame_skip)))}
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        unbounded = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = self.contract_space(unbounded(4), unbounded(RAW + 1), keypoints=3)

    expert_spec = ("metaworld", {})

    # the current task's simulation: TaskEnv's render() and render_goal() use these
    @property
    def model(self) -> mujoco.MjModel:
        return self._sim.env.model

    @property
    def data(self) -> mujoco.MjData:
        return self._sim.env.data

    @property
    def camera(self) -> FastCamera:
        return self._sim.camera

    def task_of_seed(self, seed: int) -> str:
        """The task an episode reset with ``seed`` plays (every task in turn over consecutive seeds)."""
        return self.tasks[seed % len(self.tasks)]

    @property
    def task_cycle(self) -> tuple[tuple[str, int, str], ...]:
        """(difficulty group, index, name) of each task in turn: the episode reset with seed s plays
        ``task_cycle[s % len(task_cycle)]`` (evaluation reports per task by it; data, not a method, as a
        vector env's get_attr calls methods)."""
        return tuple((group_of(name), i, name) for i, name in enumerate(self.tasks))

    def _sim_of(self, name: str) -> TaskSim:
        if name not in self._sims:
            self._sims[name] = TaskSim.make(name, self.image_size, self.task_set_seed)
        return self._sims[name]

    # ---- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        name = self.task_of_seed(seed) if seed is not None else self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self._sim = self._sim_of(name)
        self._task = self._sim.tasks[int(self.np_random.integers(len(self._sim.tasks)))]
        self._sim.env.set_task(self._task)
        self._raw, _ = self._sim.env.reset()
        self._goal_qpos = None
        texts = wordings(name, self.held_out_instructions)
        self.instruction = texts[int(self.np_random.integers(len(texts)))]
        return self._observation(), {**self._info(0.0, False, env_reward=0.0), "task": name}

    def step(self, action):
        env = self._sim.env
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        reward, success, truncated = 0.0, False, False
        for _ in range(self.frame_skip):  # action repeat: Meta-World steps, one render per decision
            self._raw, reward, _, truncated, info = env.step(action)
            success = bool(info["success"])
            if success or truncated:
                break
        progress = 1.0 if success else float(np.clip(reward / 10.0, 0.0, 1.0))
        info = {**self._info(progress, success, env_reward=float(reward)), "task": self._sim.name}
        return self._observation(), progress, success, bool(truncated), info

    def close(self):
        for sim in self._sims.values():
            sim.close()

    # ---- the contract --------------------------------------------------------------------------
    def _observation(self) -> dict:
        if not self.pixels:  # state-only runs (the wrapper's checks): no rendering at all
            s = self.image_size
            self._frame = np.zeros((s, s, 3), np.uint8)
            return {"pixels": {"top": self._frame.copy()}, "agent_pos": self._agent_pos().astype(np.float32),
                    "environment_state": self._environment_state().astype(np.float32), "keypoints": self._keypoints()}
        return super()._observation()

    def _agent_pos(self) -> np.ndarray:
        return self._raw[:4]

    def _environment_state(self) -> np.ndarray:
        return np.concatenate([self._raw, [TASKS.index(self._sim.name)]])

    def _keypoints(self) -> np.ndarray:
        points = np.stack([self._raw[4:7], self._raw[36:39], self._raw[0:3]])  # object, goal, hand
        return project(points, self.camera.camera, float(self.model.vis.global_.fovy)).reshape(-1)

    def _progress(self) -> tuple[float, bool]:
        raise NotImplementedError("Meta-World judges progress and success in its own step()")

    def _set_goal_configuration(self) -> None:
        if self._goal_qpos is None:
            self._goal_qpos = self._solve_on_twin()
        self.data.qpos[:], self.data.qvel[:], self.data.mocap_pos[:] = self._goal_qpos

    def _solve_on_twin(self) -> tuple[np.ndarray, ...]:
        """(qpos, qvel, mocap_pos) where Meta-World's expert ends, from this episode's start on a twin env."""
        sim = self._sim
        if sim.twin is None:
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS

            sim.twin = ALL_V3_ENVIRONMENTS[sim.name]()
        sim.twin.set_task(self._task)
        raw, _ = sim.twin.reset()
        expert = MetaWorldExpert().policy(sim.name)
        for _ in range(EPISODE_STEPS):
            raw, _, _, truncated, info = sim.twin.step(np.clip(expert.get_action(raw), -1.0, 1.0))
            if info["success"] or truncated:
                break
        return sim.twin.data.qpos.copy(), sim.twin.data.qvel.copy(), sim.twin.data.mocap_pos.copy()
