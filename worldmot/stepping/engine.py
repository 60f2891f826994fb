"""The one loop that steps envs with a policy; recording and evaluation both run their episodes through it.

    run_episodes(env, policy, range(10), seed, on_step)                    single env: one episode after another
    run_episodes(vector_env, policy, range(10), seed, on_step)             vector env: B episodes at a time
    run_episodes(vector_env, policy, range(10), seed, on_step, refill=True)  a sub-env starts the next episode
                                                                           as soon as its own ends

Episode i is reset with seed ``seed + i`` (None: unseeded). After every env step, ``on_step(steps)`` gets the
:class:`Step` of each (sub-)env that plays an episode, in sub-env order; the step that ends an episode has
``done`` set, and nothing more of that episode follows.

The policy sees the env's observation plus "task" (the instruction) and, with ``goal_frame``, "goal" (the image
of the episode's goal configuration, ``render_goal()``): batched over sub-envs for a vector env.

Vector envs, two schedules:
    batches (default)  the sub-envs start together: the env is reset with the first episode's seed (Gymnasium
                       seeds sub-env j with seed + j) and the policy with the same seed; a sub-env whose episode
                       ended keeps being stepped (its steps are not reported) until the whole batch has ended.
    refill             needs ``autoreset_mode=DISABLED``: an ended sub-env is reset (``reset_mask``) with the next
                       episode's seed at once, or idles once every episode has started. A policy with
                       ``reset_envs({k: seed})`` is told which sub-envs started an episode and with which seed
                       (its randomness for episode i then depends on seed + i alone, whichever worker plays it
                       and whatever ran before); other policies are built seeded and run on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np


@dataclass
class Step:
    """One env step of one (sub-)env's episode."""

    episode: int  # index of the episode in the run (its seed is seed + episode)
    seed: int | None
    t: int  # steps of this episode before this one
    task: str  # the instruction
    goal: np.ndarray | None  # (H, W, 3) uint8 goal image, when asked for
    observation: dict[str, Any]  # before the action, no batch dim: pixels/<camera> (H, W, 3), agent_pos (S,), ...
    action: np.ndarray  # (A,) float32
    reasoning: str | None  # the policy's reasoning (subtask) for this action
    reward: float
    success: bool  # info["is_success"] after the action
    progress: float  # info["progress"] after the action (the reward where the env has none)
    terminated: bool
    truncated: bool  # the env's truncation, or ``max_steps`` reached
    next_observation: dict[str, Any]  # after the action: the final observation when ``done``

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


OnStep = Callable[[list[Step]], None]


def run_episodes(env: gym.Env | gym.vector.VectorEnv, policy: Any, episodes: range, seed: int | None,
                 on_step: OnStep, *, refill: bool = False, goal_frame: bool = False,
                 max_steps: int | None = None) -> None:
    """Play ``episodes`` with ``policy`` (the Policy protocol of worldmot.policies); ``max_steps`` caps an
    episode's length besides the env's own time limit."""
    if isinstance(env, gym.vector.VectorEnv):
        _run_vector(env, policy, episodes, seed, on_step, refill, goal_frame, max_steps)
    else:
        _run_single(env, policy, episodes, seed, on_step, goal_frame, max_steps)


def seed_of(seed: int | None, episode: int) -> int | None:
    return None if seed is None else seed + episode


def _run_single(env, policy, episodes, seed, on_step, goal_frame, max_steps) -> None:
    for i in episodes:
        s = seed_of(seed, i)
        obs, info = env.reset(seed=s)
        policy.reset(seed=s)
        task = str(info["instruction"])
        goal = env.unwrapped.render_goal() if goal_frame else None
        t, done = 0, False
        while not done:
            action = policy.act({**obs, "task": task, **({"goal": goal} if goal is not None else {})})
            reasoning = policy.reasoning
            seen = _snapshot(obs)  # before the step: an env may reuse its observation dict
            next_obs, reward, terminated, truncated, info = env.step(action)
            capped = max_steps is not None and t + 1 >= max_steps
            step = Step(i, s, t, task, goal, seen, np.asarray(action, np.float32), reasoning, float(reward),
                        bool(info.get("is_success", False)), float(info.get("progress", reward)), bool(terminated),
                        bool(truncated or (capped and not terminated)), next_obs)
            on_step([step])
            obs, t, done = next_obs, t + 1, step.done


class _SubEnvs:
    """Which episode each of B sub-envs plays, with its seed, step count, instruction and goal image."""

    def __init__(self, n: int):
        self.episode: list[int | None] = [None] * n
        self.seed: list[int | None] = [None] * n
        self.t = [0] * n
        self.tasks = [""] * n
        self.goals: list[np.ndarray | None] = [None] * n

    def assign(self, k: int, episode: int | None, seed: int | None) -> None:
        self.episode[k], self.seed[k], self.t[k] = episode, seed, 0

    def playing(self) -> list[int]:
        return [k for k, e in enumerate(self.episode) if e is not None]


def _run_vector(env, policy, episodes, seed, on_step, refill, goal_frame, max_steps) -> None:
    n = env.num_envs
    todo = list(episodes)
    while todo:
        subs = _SubEnvs(n)
        if refill:
            obs, info = _launch(env, policy, subs, np.ones(n, bool), todo, seed)
        else:
            batch, todo = todo[:n], todo[n:]
            for k in range(n):
                subs.assign(k, batch[k] if k < len(batch) else None, seed_of(seed, batch[0] + k))
            obs, info = env.reset(seed=seed_of(seed, batch[0]))
            policy.reset(seed=seed_of(seed, batch[0]))
        _start(env, subs, range(n), info, goal_frame)
        while subs.playing():
            obs, ended = _step_all(env, policy, subs, obs, on_step, goal_frame, max_steps)
            if refill and ended.any():
                reset_obs, reset_info = _launch(env, policy, subs, ended, todo, seed)
                obs = _merge(obs, reset_obs, ended)
                _start(env, subs, np.flatnonzero(ended), reset_info, goal_frame)


def _launch(env, policy, subs: _SubEnvs, mask: np.ndarray, todo: list[int], seed: int | None) -> tuple[dict, dict]:
    """Reset the sub-envs in ``mask``, each with the next episode of ``todo`` (or idle once it is empty)."""
    seeds: list[int | None] = [None] * len(mask)
    for k in np.flatnonzero(mask):
        episode = todo.pop(0) if todo else None
        seeds[k] = None if episode is None else seed_of(seed, episode)
        subs.assign(k, episode, seeds[k])
    if hasattr(policy, "reset_envs"):
        policy.reset_envs({int(k): seeds[k] for k in np.flatnonzero(mask)})
    if mask.all():
        return env.reset(seed=seeds)
    return env.reset(seed=seeds, options={"reset_mask": mask})


def _start(env, subs: _SubEnvs, ks, info: dict, goal_frame: bool) -> None:
    """Instructions (and goal images) of the sub-envs ``ks``, which were just reset."""
    goals = list(env.call("render_goal")) if goal_frame else None
    for k in ks:
        subs.tasks[k] = str(info["instruction"][k])
        subs.goals[k] = goals[k] if goals is not None else None


def _step_all(env, policy, subs: _SubEnvs, obs: dict, on_step: OnStep, goal_frame: bool,
              max_steps: int | None) -> tuple[dict, np.ndarray]:
    """One env step of every sub-env; reports the playing ones. Returns the next observation and which
    sub-envs ended an episode (B,) bool: a reported one, or an idle sub-env's own unreported one."""
    extra = {"goal": np.stack(subs.goals)} if goal_frame else {}
    actions = np.asarray(policy.act({**obs, "task": list(subs.tasks), **extra}))
    reasoning = policy.reasoning
    seen = {k: _row(obs, k) for k in subs.playing()}  # before the step: an env may reuse its observation dict
    next_obs, reward, terminated, truncated, info = env.step(actions)
    success = info.get("is_success", np.zeros(len(subs.t), bool))
    progress = info.get("progress", reward)
    steps: list[Step] = []
    ended = np.logical_or(terminated, truncated)
    for k in subs.playing():
        capped = max_steps is not None and subs.t[k] + 1 >= max_steps
        steps.append(Step(subs.episode[k], subs.seed[k], subs.t[k], subs.tasks[k], subs.goals[k], seen[k],
                          np.asarray(actions[k], np.float32),
                          reasoning[k] if isinstance(reasoning, (list, tuple)) else reasoning,
                          float(reward[k]), bool(success[k]), float(progress[k]), bool(terminated[k]),
                          bool(truncated[k] or (capped and not terminated[k])), _row(next_obs, k)))
        subs.t[k] += 1
        if steps[-1].done:
            ended[k] = True
            subs.assign(k, None, None)
    if steps:
        on_step(steps)
    return next_obs, ended


def _snapshot(obs: dict) -> dict:
    """The observation's arrays as they are now, in dicts of its own."""
    return {key: _snapshot(v) if isinstance(v, dict) else v for key, v in obs.items()}


def _row(obs: dict, k: int) -> dict:
    """Sub-env ``k``'s part of a batched observation (nested dicts of (B, ...) arrays)."""
    return {key: _row(v, k) if isinstance(v, dict) else v[k] for key, v in obs.items()}


def _merge(obs: dict, reset_obs: dict, mask: np.ndarray) -> dict:
    """``obs`` with the rows in ``mask`` taken from ``reset_obs`` (new arrays: reported steps keep theirs)."""
    merged = {}
    for key, v in obs.items():
        if isinstance(v, dict):
            merged[key] = _merge(v, reset_obs[key], mask)
        else:
            merged[key] = np.array(v, copy=True)
            merged[key][mask] = reset_obs[key][mask]
    return merged
