"""Whole episodes in memory, collected from the stepping engine: what an evaluation keeps and shows.

    episode = collect_episodes(env, policy, seed=0)            # single env -> Episode
    episodes = collect_episodes(vector_env, policy, seed=0)    # vector env -> list[Episode], one per sub-env

Step t of an Episode holds the observation the policy saw (frame, state), the action it took, what it
said (subtask), and the outcome of that action (reward, success, progress). The observation after the
last action is kept as ``final_frame`` / ``final_state`` / ``final_environment_state``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from worldmot.stepping.engine import Step, run_episodes


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

    @classmethod
    def from_steps(cls, steps: list[Step]) -> "Episode":
        """The episode of ``steps`` (its steps in order, the last one ``done``)."""
        first, last = steps[0], steps[-1]
        final = last.next_observation
        return cls(
            instruction=first.task,
            frames=np.stack([main_view(s.observation["pixels"]) for s in steps]),
            states=np.stack([s.observation["agent_pos"] for s in steps]).astype(np.float32),
            environment_states=np.stack([s.observation["environment_state"] for s in steps]).astype(np.float32),
            actions=np.stack([s.action for s in steps]),
            rewards=np.asarray([s.reward for s in steps], np.float32),
            progress=np.asarray([s.progress for s in steps], np.float32),
            successes=np.asarray([s.success for s in steps], bool),
            subtasks=[s.reasoning for s in steps],
            final_frame=main_view(final["pixels"]),
            final_state=np.asarray(final["agent_pos"], np.float32),
            final_environment_state=np.asarray(final["environment_state"], np.float32),
            terminated=last.terminated,
            truncated=last.truncated,
            goal_frame=first.goal,
            seed=first.seed,
        )


def main_view(pixels: dict) -> np.ndarray:
    """The camera an episode keeps: "top" (worldmot's envs' camera), else the first (a dataset's own names)."""
    return pixels["top"] if "top" in pixels else next(iter(pixels.values()))


class EpisodeCollector:
    """``on_step`` hook of :func:`run_episodes` that keeps every episode's steps; ``episodes`` in index order."""

    def __init__(self):
        self._steps: dict[int, list[Step]] = {}
        self._done: dict[int, Episode] = {}

    def __call__(self, steps: list[Step]) -> None:
        for step in steps:
            self._steps.setdefault(step.episode, []).append(step)
            if step.done:
                self._done[step.episode] = Episode.from_steps(self._steps.pop(step.episode))

    @property
    def episodes(self) -> list[Episode]:
        return [self._done[i] for i in sorted(self._done)]


def collect_episodes(env: gym.Env | gym.vector.VectorEnv, policy: Any, seed: int | None = None,
                     max_steps: int | None = None, goal_frame: bool = False) -> Episode | list[Episode]:
    """One episode per (sub-)env, sub-env j seeded with ``seed + j``; ``max_steps`` caps the length besides
    the env's own time limit; ``goal_frame``: the policy also sees (and the episode keeps) the goal image."""
    vector = isinstance(env, gym.vector.VectorEnv)
    collector = EpisodeCollector()
    run_episodes(env, policy, range(env.num_envs if vector else 1), seed, collector, goal_frame=goal_frame,
                 max_steps=max_steps)
    return collector.episodes if vector else collector.episodes[0]
