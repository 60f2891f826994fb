"""Run a policy in an env for one episode and keep everything a recorder or an evaluation needs.

    episode = rollout(env, policy, seed=0)                 # single env -> Episode
    episodes = rollout(vector_env, policy, seed=0)         # vector env -> list[Episode], one per sub-env

Step t of an Episode holds the observation the policy saw (frame, state), the action it took, what it
said (subtask), and the outcome of that action (reward, success, progress). With ``goal_frame=True`` the
policy's observation also carries "goal", the image of the episode's goal configuration. The observation after the
last action is kept as ``final_frame`` / ``final_state`` / ``final_environment_state``. A vector env is
stepped until every sub-env has ended once; steps after a sub-env's end (autoreset) are not recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from worldmot.policies.base import Policy


@dataclass
class Episode:
    """One episode of T steps; image key "top" (H, W, 3) uint8."""

    instruction: str
    frames: np.ndarray  # (T, H, W, 3) uint8, observation before action t
    states: np.ndarray  # (T, S) float32 agent_pos
    environment_states: np.ndarray  # (T, E) float32
    actions: np.ndarray  # (T, A) float32
    rewards: np.ndarray  # (T,) float32, after action t
    progress: np.ndarray  # (T,) float32, after action t
    successes: np.ndarray  # (T,) bool, is_success after action t
    subtasks: list[str | None]  # (T,) the policy's reasoning at step t
    final_frame: np.ndarray  # (H, W, 3)
    final_state: np.ndarray  # (S,)
    final_environment_state: np.ndarray  # (E,)
    terminated: bool
    truncated: bool
    goal_frame: np.ndarray | None = None  # (H, W, 3), when asked for
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.successes.any())

    def __len__(self) -> int:
        return len(self.actions)


def rollout(
    env: gym.Env | gym.vector.VectorEnv,
    policy: Policy,
    seed: int | None = None,
    max_steps: int | None = None,
    goal_frame: bool = False,
) -> Episode | list[Episode]:
    """One episode per (sub-)env; ``max_steps`` caps the length besides the env's own time limit."""
    if isinstance(env, gym.vector.VectorEnv):
        return _rollout_vector(env, policy, seed, max_steps, goal_frame)
    return _rollout_single(env, policy, seed, max_steps, goal_frame)


class _Recorder:
    def __init__(self):
        self.frames, self.states, self.env_states, self.actions = [], [], [], []
        self.rewards, self.progress, self.successes, self.subtasks = [], [], [], []

    def observe(self, obs: dict, action: np.ndarray, subtask: str | None) -> None:
        self.frames.append(obs["pixels"]["top"])
        self.states.append(obs["agent_pos"])
        self.env_states.append(obs["environment_state"])
        self.actions.append(np.asarray(action, np.float32))
        self.subtasks.append(subtask)

    def outcome(self, reward: float, info_success: bool, progress: float) -> None:
        self.rewards.append(reward)
        self.successes.append(bool(info_success))
        self.progress.append(progress)

    def episode(self, instruction, final_obs, terminated, truncated, goal, seed) -> Episode:
        return Episode(
            instruction=instruction,
            frames=np.stack(self.frames),
            states=np.stack(self.states).astype(np.float32),
            environment_states=np.stack(self.env_states).astype(np.float32),
            actions=np.stack(self.actions),
            rewards=np.asarray(self.rewards, np.float32),
            progress=np.asarray(self.progress, np.float32),
            successes=np.asarray(self.successes, bool),
            subtasks=self.subtasks,
            final_frame=final_obs["pixels"]["top"],
            final_state=np.asarray(final_obs["agent_pos"], np.float32),
            final_environment_state=np.asarray(final_obs["environment_state"], np.float32),
            terminated=bool(terminated),
            truncated=bool(truncated),
            goal_frame=goal,
            seed=seed,
        )


def _rollout_single(env, policy, seed, max_steps, want_goal) -> Episode:
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    instruction = info["instruction"]
    goal = env.unwrapped.render_goal() if want_goal else None
    rec = _Recorder()
    terminated = truncated = False
    while not (terminated or truncated):
        action = policy.act({**obs, "task": instruction, **({"goal": goal} if goal is not None else {})})
        rec.observe(obs, action, policy.reasoning)
        obs, reward, terminated, truncated, info = env.step(action)
        rec.outcome(float(reward), info.get("is_success", False), float(info.get("progress", reward)))
        if max_steps is not None and len(rec.actions) >= max_steps:
            truncated = truncated or not terminated
    return rec.episode(instruction, obs, terminated, truncated, goal, seed)


def _index(obs: dict, i: int) -> dict:
    return {"pixels": {"top": obs["pixels"]["top"][i]}, "agent_pos": obs["agent_pos"][i],
            "environment_state": obs["environment_state"][i]}


def _rollout_vector(env, policy, seed, max_steps, want_goal) -> list[Episode]:
    n = env.num_envs
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    instructions = [str(s) for s in info["instruction"]]
    goals = list(env.call("render_goal")) if want_goal else [None] * n
    recs = [_Recorder() for _ in range(n)]
    done = np.zeros(n, bool)
    ends: list = [None] * n
    steps = 0
    while not done.all():
        extra = {"goal": np.stack(goals)} if want_goal else {}
        action = np.asarray(policy.act({**obs, "task": instructions, **extra}))
        reasoning = policy.reasoning
        for i in np.flatnonzero(~done):
            rec_subtask = reasoning[i] if isinstance(reasoning, (list, tuple)) else reasoning
            recs[i].observe(_index(obs, i), action[i], rec_subtask)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        success = info.get("is_success", np.zeros(n, bool))
        progress = info.get("progress", reward)
        for i in np.flatnonzero(~done):
            recs[i].outcome(float(reward[i]), bool(success[i]), float(progress[i]))
            capped = max_steps is not None and steps >= max_steps
            if terminated[i] or truncated[i] or capped:
                done[i] = True
                ends[i] = (_index(obs, i), bool(terminated[i]), bool(truncated[i] or (capped and not terminated[i])))
    seeds = [None if seed is None else seed + i for i in range(n)]  # Gymnasium seeds sub-env i with seed + i
    return [recs[i].episode(instructions[i], *ends[i], goals[i], seeds[i]) for i in range(n)]
