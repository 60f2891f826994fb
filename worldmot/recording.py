"""Record a policy's episodes in a Gymnasium env into a LeRobot v3.0 dataset.

Row t of an episode holds the observation before step t, the action taken, and the step's outcome
(next.reward, next.done, next.success), the instruction as the task and the policy's reasoning as the subtask.
Where the env has a scripted expert, row t also holds ``expert_action``: what the expert would do from that
observation, whichever policy acted (noise-injected or random recordings relabelled with the expert's
action, as DART and DAgger do), so that the AR policy learns the expert's clean action from every state
the recording visits while the world model learns from the executed one.
Episode i is reset with seed ``seed + i`` whichever worker runs it, and episodes are saved in index order,
so a resumed recording continues the same sequence of seeds. The episodes are stepped by worldmot.stepping
(vector envs: a worker starts the next episode as soon as its own ends); the frames go to the writer from its
per-step hook.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from worldmot.datasets.video import DEFAULT_CODEC, available_codec
from worldmot.datasets.writer import LeRobotWriter
from worldmot.envs.experts import expert_of
from worldmot.envs.make import make_env
from worldmot.errors import WorldmotError
from worldmot.io import check_can_create
from worldmot.policies.factory import make_policy as make_named_policy
from worldmot.stepping import Step, run_episodes

EXPERT_ACTION = "expert_action"


@dataclass
class RecordResult:
    root: Path
    episodes: int  # recorded by this call
    total_episodes: int
    steps: int  # env steps recorded by this call
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


def features_for(observation_space: gym.spaces.Dict, action_space: gym.spaces.Box,
                 expert_action: bool = False) -> dict[str, dict]:
    """LeRobot features of worldmot's env contract (pixels/agent_pos/environment_state[/keypoints], Box actions;
    ``expert_action``: the expert's action beside the executed one). An empty environment_state or keypoints
    (an env that has none) is left out: a LeRobot vector feature has at least one value."""
    feats: dict[str, dict] = {}
    for cam, space in observation_space["pixels"].spaces.items():
        feats[f"observation.images.{cam}"] = {"dtype": "video", "shape": list(space.shape),
                                              "names": ["height", "width", "channels"]}
    feats["observation.state"] = _vector(observation_space["agent_pos"].shape)
    for key in ("environment_state", "keypoints"):
        if key in observation_space.spaces and int(np.prod(observation_space[key].shape)) > 0:
            feats[f"observation.{key}"] = _vector(observation_space[key].shape)
    feats["action"] = _vector(action_space.shape)
    if expert_action:
        feats[EXPERT_ACTION] = _vector(action_space.shape)
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    feats["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    return feats


def _vector(shape: tuple[int, ...]) -> dict:
    return {"dtype": "float32", "shape": [int(np.prod(shape))], "names": None}


def _frame(step: Step, feats: dict, expert_action: np.ndarray | None) -> dict[str, Any]:
    """One dataset row of ``feats`` from one env step."""
    obs = step.observation
    frame = {f"observation.images.{cam}": img for cam, img in obs["pixels"].items()}
    frame["observation.state"] = np.asarray(obs["agent_pos"], np.float32).reshape(-1)
    for key in ("environment_state", "keypoints"):
        if f"observation.{key}" in feats:
            frame[f"observation.{key}"] = np.asarray(obs[key], np.float32).reshape(-1)
    frame["action"] = np.asarray(step.action, np.float32).reshape(-1)
    if expert_action is not None:
        frame[EXPERT_ACTION] = np.asarray(expert_action, np.float32).reshape(-1)
    frame.update({"next.reward": float(step.reward), "next.done": bool(step.done), "next.success": bool(step.success)})
    return frame


def record(env_id: str, policy_name: str, episodes: int, out: str | Path, seed: int = 0, num_envs: int = 1,
           resume: bool = False, image_size: int = 64, codec: str = DEFAULT_CODEC, progress: bool = True,
           make_policy: Callable[..., Any] | None = None, policy_kwargs: dict[str, Any] | None = None,
           spec_overrides: Sequence[str] = ()) -> RecordResult:
    """Record ``episodes`` episodes (in total, counting what a resumed dataset already holds).

    ``env_id``: any name worldmot.envs.make resolves (a task, a spec, a Gymnasium id); ``spec_overrides``:
    ``key=value`` fields of its spec. ``policy_kwargs`` go to the policy's builder (for example
    ``{"action_noise": 0.5}`` for "scripted").
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorldmotError(f"--out {out}: is a file (expected a dataset folder)")
    if out.exists() and any(out.iterdir()) and not resume:
        raise WorldmotError(f"--out {out}: exists and is not empty (expected a new folder, or --resume)")
    if num_envs < 1 or episodes < 1:
        raise WorldmotError(f"--episodes {episodes} --num-envs {num_envs} (expected both >= 1)")
    if image_size < 8 or image_size % 2:
        raise WorldmotError(f"--image-size {image_size}: expected an even number of pixels >= 8")
    if seed < 0:
        raise WorldmotError(f"--seed {seed}: expected a number >= 0 (episode i is reset with seed + i)")
    available_codec(codec)  # an unknown name fails before the env starts
    check_can_create(out)  # so does an --out under a file or on a read-only or pseudo file system
    make_policy = make_policy or make_named_policy
    # spawn workers (not fork): a process that already rendered (EGL) or encoded (SVT threads) can hand a held
    # lock to a forked worker, which then hangs in its first reset
    env = make_env(env_id, num_envs, None if num_envs == 1 else "async", image_size=image_size,
                   spec_overrides=spec_overrides, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    try:
        obs_space = env.single_observation_space if num_envs > 1 else env.observation_space
        act_space = env.single_action_space if num_envs > 1 else env.action_space
        expert = expert_of(env)
        feats = features_for(obs_space, act_space, expert_action=expert is not None)
        fps = _metadata_fps(env)
        # before the writer: a policy the env cannot serve (no scripted expert) fails before anything is written
        policy = make_policy(policy_name, env, seed=seed, **(policy_kwargs or {}))
        writer = LeRobotWriter(out, fps=fps, features=feats, robot_type=env_id, codec=codec, resume=resume)
        if writer.info.get("robot_type") != env_id or writer.fps != fps:
            raise WorldmotError(f"{out}/meta/info.json: recorded from {writer.info.get('robot_type')!r} at "
                                f"{writer.fps} fps (expected --env {env_id!r} at {fps} fps to resume)")
        feats = writer.features  # a resumed dataset keeps its own columns
        start = writer.info["total_episodes"]
        t0 = time.perf_counter()
        with tqdm(total=episodes, initial=min(start, episodes), unit="ep", disable=not progress,
                  desc=f"record {env_id}") as bar:
            rows = DatasetRows(writer, feats, expert if EXPERT_ACTION in feats else None, start, bar)
            run_episodes(env, policy, range(start, episodes), seed, rows, refill=True)
        writer.close()
        return RecordResult(out, max(episodes - start, 0), writer.info["total_episodes"], rows.steps,
                            time.perf_counter() - t0)
    finally:
        env.close()


class DatasetRows:
    """``on_step`` hook that writes every step as a dataset row and saves episodes in index order.

    Each episode is buffered in the writer slot of its index; an episode that ends before an earlier one
    (another worker's) waits there until every earlier one is saved."""

    def __init__(self, writer: LeRobotWriter, feats: dict, expert: Callable | None, first: int, bar: tqdm):
        self.writer, self.feats, self.expert, self.bar = writer, feats, expert, bar
        self.next_save, self.finished, self.steps = first, set(), 0

    def __call__(self, steps: list[Step]) -> None:
        for step in steps:
            self.writer.add_frame(_frame(step, self.feats, self._expert_action(step)), step.task,
                                  step.reasoning or "", slot=step.episode)
            self.steps += 1
            if step.done:
                self.finished.add(step.episode)
        while self.next_save in self.finished:
            self.writer.save_episode(slot=self.next_save)
            self.finished.discard(self.next_save)
            self.next_save += 1
            self.bar.update(1)
            self.bar.set_postfix(steps=self.steps)

    def _expert_action(self, step: Step) -> np.ndarray | None:
        """(A,) what the expert would do from the step's observation, or None without an expert."""
        if self.expert is None:
            return None
        obs = step.observation
        actions, _ = self.expert(np.asarray(obs["agent_pos"])[None], np.asarray(obs["environment_state"])[None],
                                 [step.task])
        return np.asarray(actions, np.float32)[0]


def _metadata_fps(env: Any) -> int:
    meta = env.get_attr("metadata")[0] if isinstance(env, gym.vector.VectorEnv) else env.metadata
    fps = meta.get("render_fps")
    if not fps:
        raise WorldmotError("env metadata has no render_fps (expected the env's control rate)")
    return int(fps)
