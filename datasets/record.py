"""Record policy rollouts in a Gymnasium env into a LeRobot v3.0 dataset.

Row t of an episode holds the observation before step t, the action taken, and the step's outcome
(next.reward, next.done, next.success), the instruction as the task and the policy's reasoning as the subtask.
Where the env has a scripted expert, row t also holds ``expert_action``: what the expert would do from that
observation, whichever policy acted (noise-injected or random recordings relabelled with the expert's
action, as DART and DAgger do), so that the AR policy learns the expert's clean action from every state
the recording visits while the world model learns from the executed one.
Episode i is reset with seed ``seed + i`` whichever worker runs it, and episodes are saved in index order,
so a resumed recording continues the same sequence of seeds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from worldmot.datasets.video import DEFAULT_CODEC
from worldmot.datasets.writer import LeRobotWriter
from worldmot.errors import WorldmotError

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
    ``expert_action``: the expert's action beside the executed one)."""
    feats: dict[str, dict] = {}
    for cam, space in observation_space["pixels"].spaces.items():
        feats[f"observation.images.{cam}"] = {"dtype": "video", "shape": list(space.shape),
                                              "names": ["height", "width", "channels"]}
    feats["observation.state"] = _vector(observation_space["agent_pos"].shape)
    for key in ("environment_state", "keypoints"):
        if key in observation_space.spaces:
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


def _frame(obs: dict, k: int | None, action: np.ndarray, reward: float, done: bool, success: bool,
           feats: dict, expert_action: np.ndarray | None = None) -> dict[str, Any]:
    pick = (lambda x: x) if k is None else (lambda x: x[k])
    frame = {f"observation.images.{cam}": pick(img) for cam, img in obs["pixels"].items()}
    frame["observation.state"] = np.asarray(pick(obs["agent_pos"]), np.float32).reshape(-1)
    for key in ("environment_state", "keypoints"):
        if f"observation.{key}" in feats:
            frame[f"observation.{key}"] = np.asarray(pick(obs[key]), np.float32).reshape(-1)
    frame["action"] = np.asarray(action, np.float32).reshape(-1)
    if expert_action is not None:
        frame[EXPERT_ACTION] = np.asarray(expert_action, np.float32).reshape(-1)
    frame.update({"next.reward": float(reward), "next.done": bool(done), "next.success": bool(success)})
    return frame


def make_env(env_id: str, num_envs: int, image_size: int) -> gym.Env | gym.vector.VectorEnv:
    import worldmot.envs  # noqa: F401  registers the worldmot/* ids

    if env_id not in gym.registry:
        known = ", ".join(i for i in sorted(gym.registry) if i.startswith("worldmot/"))
        raise WorldmotError(f"--env {env_id!r}: unknown Gymnasium id (worldmot ids: {known})")
    if num_envs == 1:
        return gym.make(env_id, image_size=image_size)
    # spawn, not fork: a process that already rendered (EGL) or encoded (SVT threads) can hand a held lock
    # to a forked worker, which then hangs in its first reset
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="async",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED, "context": "spawn"},
                        image_size=image_size)


def record(env_id: str, policy_name: str, episodes: int, out: str | Path, seed: int = 0, num_envs: int = 1,
           resume: bool = False, image_size: int = 64, codec: str = DEFAULT_CODEC, progress: bool = True,
           make_policy: Callable[..., Any] | None = None, policy_kwargs: dict[str, Any] | None = None,
           ) -> RecordResult:
    """Record ``episodes`` episodes (in total, counting what a resumed dataset already holds).

    ``policy_kwargs`` go to the policy's builder (for example ``{"action_noise": 0.5}`` for "scripted").
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorldmotError(f"--out {out}: is a file (expected a dataset folder)")
    if out.exists() and any(out.iterdir()) and not resume:
        raise WorldmotError(f"--out {out}: exists and is not empty (expected a new folder, or --resume)")
    if num_envs < 1 or episodes < 1:
        raise WorldmotError(f"--episodes {episodes} --num-envs {num_envs} (expected both >= 1)")
    from worldmot.policies.factory import expert_of

    if make_policy is None:
        from worldmot.policies.factory import make_policy
    env = make_env(env_id, num_envs, image_size)
    try:
        obs_space = env.single_observation_space if num_envs > 1 else env.observation_space
        act_space = env.single_action_space if num_envs > 1 else env.action_space
        expert = expert_of(env)
        feats = features_for(obs_space, act_space, expert_action=expert is not None)
        fps = _metadata_fps(env)
        writer = LeRobotWriter(out, fps=fps, features=feats, robot_type=env_id, codec=codec, resume=resume)
        if writer.info.get("robot_type") != env_id or writer.fps != fps:
            raise WorldmotError(f"{out}/meta/info.json: recorded from {writer.info.get('robot_type')!r} at "
                                f"{writer.fps} fps (expected --env {env_id!r} at {fps} fps to resume)")
        feats = writer.features  # a resumed dataset keeps its own columns
        label = expert if EXPERT_ACTION in feats else None
        policy = make_policy(policy_name, env, seed=seed, **(policy_kwargs or {}))
        run = _record_vector if num_envs > 1 else _record_single
        start = writer.info["total_episodes"]
        t0 = time.perf_counter()
        with tqdm(total=episodes, initial=min(start, episodes), unit="ep", disable=not progress,
                  desc=f"record {env_id}") as bar:
            steps = run(env, policy, writer, feats, label, start, episodes, seed, bar) if start < episodes else 0
        writer.close()
        return RecordResult(out, max(episodes - start, 0), writer.info["total_episodes"], steps,
                            time.perf_counter() - t0)
    finally:
        env.close()


def _expert_actions(expert: Callable | None, obs: dict, tasks: list[str]) -> np.ndarray | None:
    """(B, A) the expert's actions from batched observations, or None without an expert."""
    if expert is None:
        return None
    return np.asarray(expert(obs["agent_pos"], obs["environment_state"], tasks)[0], np.float32)


def _metadata_fps(env: Any) -> int:
    meta = env.get_attr("metadata")[0] if isinstance(env, gym.vector.VectorEnv) else env.metadata
    fps = meta.get("render_fps")
    if not fps:
        raise WorldmotError("env metadata has no render_fps (expected the env's control rate)")
    return int(fps)


def _record_single(env, policy, writer, feats, expert, start, episodes, seed, bar) -> int:
    steps = 0
    for i in range(start, episodes):
        obs, info = env.reset(seed=seed + i)
        policy.reset(seed=seed + i)
        task = str(info["instruction"])
        done = False
        while not done:
            action = policy.act({**obs, "task": task})
            subtask = policy.reasoning or ""
            labelled = _expert_actions(expert, {k: np.asarray(obs[k])[None] for k in ("agent_pos", "environment_state")},
                                       [task])
            nobs, reward, term, trunc, ninfo = env.step(action)
            done = bool(term or trunc)
            writer.add_frame(_frame(obs, None, action, reward, done, ninfo["is_success"], feats,
                                    None if labelled is None else labelled[0]), task, subtask)
            obs = nobs
            steps += 1
        writer.save_episode()
        bar.update(1)
        bar.set_postfix(steps=steps)
    return steps


def _record_vector(env, policy, writer, feats, expert, start, episodes, seed, bar) -> int:
    """K workers; worker k runs episode ``running[k]`` (or idles once all are launched). Finished
    episodes wait in writer slots (keyed by episode index) until every earlier one is saved."""
    k_envs = env.num_envs
    running: list[int | None] = [None] * k_envs
    next_launch, next_save, steps = start, start, 0
    finished: set[int] = set()

    def launch(mask: np.ndarray) -> tuple[dict, dict]:
        nonlocal next_launch
        seeds: list[int | None] = [None] * k_envs
        for k in np.flatnonzero(mask):
            if next_launch < episodes:
                running[k], seeds[k] = next_launch, seed + next_launch
                next_launch += 1
            else:
                running[k] = None
        if mask.all():
            return env.reset(seed=seeds)
        return env.reset(seed=seeds, options={"reset_mask": mask})

    obs, info = launch(np.ones(k_envs, bool))
    tasks = [str(t) for t in info["instruction"]]
    while next_save < episodes:
        actions = policy.act({**obs, "task": tasks})
        reasoning = policy.reasoning if isinstance(policy.reasoning, list) else [policy.reasoning or ""] * k_envs
        labelled = _expert_actions(expert, obs, tasks)
        nobs, reward, term, trunc, ninfo = env.step(actions)
        done = np.logical_or(term, trunc)
        for k in range(k_envs):
            if running[k] is None:
                continue
            writer.add_frame(_frame(obs, k, actions[k], reward[k], done[k], ninfo["is_success"][k], feats,
                                    None if labelled is None else labelled[k]),
                             tasks[k], reasoning[k] or "", slot=running[k])
            steps += 1
            if done[k]:
                finished.add(running[k])
        while next_save in finished:
            writer.save_episode(slot=next_save)
            finished.discard(next_save)
            next_save += 1
            bar.update(1)
            bar.set_postfix(steps=steps)
        if done.any():
            rob, rinfo = launch(done)
            for key in nobs["pixels"]:
                nobs["pixels"][key][done] = rob["pixels"][key][done]
            for key in ("agent_pos", "environment_state", "keypoints"):
                if key in nobs:
                    nobs[key][done] = rob[key][done]
            for k in np.flatnonzero(done):
                tasks[k] = str(rinfo["instruction"][k])
        obs = nobs
    return steps
