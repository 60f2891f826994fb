"""The stepping engine: single and vector envs, both vector schedules, the per-step hook, max_steps."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

import worldmot.envs  # noqa: F401  registers the ids
from worldmot.policies import make_policy
from worldmot.stepping import EpisodeCollector, collect_episodes, run_episodes

ENV = "worldmot/Reach-v0"


def _vector(n: int, autoreset: gym.vector.AutoresetMode = gym.vector.AutoresetMode.NEXT_STEP):
    return gym.make_vec(ENV, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": autoreset})


def _single_episodes(seeds) -> list:
    env = gym.make(ENV)
    return [collect_episodes(env, make_policy("scripted", env), seed=s) for s in seeds]


def test_refill_plays_every_episode_once_as_a_single_env_does():
    """3 episodes on 2 sub-envs: the worker that ends first starts episode 2, seeded seed + 2; each episode's
    steps come in order and match the same seed on a single env (the expert is deterministic)."""
    env = _vector(2, gym.vector.AutoresetMode.DISABLED)
    collector, calls = EpisodeCollector(), []

    def on_step(steps):
        calls.append([(s.episode, s.t) for s in steps])
        collector(steps)

    run_episodes(env, make_policy("scripted", env), range(3), 40, on_step, refill=True)
    episodes = collector.episodes
    assert [e.seed for e in episodes] == [40, 41, 42]
    for ep, ref in zip(episodes, _single_episodes([40, 41, 42])):
        assert ep.instruction == ref.instruction and len(ep) == len(ref)
        np.testing.assert_array_equal(ep.actions, ref.actions)
        np.testing.assert_array_equal(ep.frames, ref.frames)
        assert ep.success == ref.success
    for e in range(3):  # every episode's steps 0..T-1, once each
        ts = [t for call in calls for (i, t) in call if i == e]
        assert ts == list(range(len(episodes[e])))


def test_batches_reset_together_and_max_steps_truncates():
    env = _vector(2)
    episodes = collect_episodes(env, make_policy("scripted", env), seed=7, max_steps=5, goal_frame=True)
    assert [len(e) for e in episodes] == [5, 5] and all(e.truncated and not e.terminated for e in episodes)
    assert [e.seed for e in episodes] == [7, 8] and all(e.goal_frame.shape == (64, 64, 3) for e in episodes)
    for ep, ref in zip(episodes, _single_episodes([7, 8])):
        np.testing.assert_array_equal(ep.actions, ref.actions[:5])
        np.testing.assert_array_equal(ep.final_frame, ref.frames[5])
