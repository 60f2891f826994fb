"""The Policy protocol: random and scripted policies, single and batched, and the factory."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import worldmot.envs  # noqa: F401
from worldmot.reasoning import positions_in
from worldmot.errors import WorldmotError
from worldmot.policies import Policy, make_policy, policy_names


@pytest.fixture(scope="module")
def push_env():
    e = gym.make("worldmot/Push-v0")
    yield e
    e.close()


def test_random_policy_in_bounds_seeded_and_batched(push_env):
    obs, info = push_env.reset(seed=0)
    p = make_policy("random", push_env, seed=3)
    assert isinstance(p, Policy)
    actions = np.stack([p.act({**obs, "task": info["instruction"]}) for _ in range(200)])
    assert actions.shape == (200, 2) and push_env.action_space.contains(actions[0])
    assert actions.min() >= -1 and actions.max() <= 1 and actions.std() > 0.3
    p.reset(seed=3)
    again = p.act({**obs, "task": info["instruction"]})
    np.testing.assert_array_equal(again, actions[0])
    batched = {"agent_pos": np.zeros((5, 2), np.float32), "task": ["x"] * 5}
    assert p.act(batched).shape == (5, 2) and p.reasoning is None


def test_scripted_policy_single_and_batched_agree(push_env):
    p = make_policy("scripted", push_env)
    observations = []
    for seed in range(3):
        obs, info = push_env.reset(seed=seed)
        observations.append({**obs, "task": info["instruction"]})
    singles = []
    for o in observations:
        singles.append(p.act(o))
        assert singles[-1].shape == (2,) and isinstance(p.reasoning, str)
        # the reasoning places the named block (environment_state[:2]) to the centimetre
        assert np.abs(positions_in(p.reasoning)[0] - o["environment_state"][:2]).max() <= 0.005 + 1e-6
    batch = {
        "agent_pos": np.stack([o["agent_pos"] for o in observations]),
        "environment_state": np.stack([o["environment_state"] for o in observations]),
        "task": [o["task"] for o in observations],
    }
    actions = p.act(batch)
    assert actions.shape == (3, 2) and isinstance(p.reasoning, list) and len(p.reasoning) == 3
    np.testing.assert_allclose(actions, np.stack(singles))


def test_unknown_policy_name_lists_choices(push_env):
    with pytest.raises(WorldmotError, match="unknown policy 'nope'.*random.*scripted"):
        make_policy("nope", push_env)
    assert {"random", "scripted"} <= set(policy_names())


def test_scripted_policy_without_expert_is_an_error():
    with pytest.raises(WorldmotError, match="no scripted expert"):
        make_policy("scripted", gym.make("worldmot/Pusher-v5"))


def test_scripted_exploration_noise_is_seeded_correlated_clipped_and_still_succeeds():
    from worldmot.envs.experts import ReachExpert
    from worldmot.policies.scripted import ScriptedPolicy

    def still(pos, state, tasks):  # an expert that never moves: what remains is the noise
        return np.zeros((len(pos), 2), np.float32), ["stay"] * len(pos)

    observation = {"agent_pos": np.zeros(2), "environment_state": np.zeros(6), "task": "stay"}
    policies = [ScriptedPolicy(still, action_noise=0.3, seed=1) for _ in range(2)]
    runs = [np.array([p.act(observation) for _ in range(2000)]) for p in policies]
    np.testing.assert_array_equal(runs[0], runs[1])  # the same seed, the same noise
    noise = runs[0]
    assert np.abs(noise).max() <= 1.0 and 0.25 < noise.std() < 0.35
    lag1 = np.corrcoef(noise[:-1, 0], noise[1:, 0])[0, 1]
    assert 0.7 < lag1 < 0.9, lag1  # held over several steps (AR(1), 0.8), not white
    bursts = ScriptedPolicy(still, action_noise=0.3, seed=2, noise_duty=0.5, burst=8)
    on = np.array([np.any(bursts.act(observation) != 0) for _ in range(4000)])
    assert 0.4 < on.mean() < 0.6  # noise on half of the steps ...
    switches = np.count_nonzero(on[1:] != on[:-1])
    assert 4000 / 8 / 2 < switches < 4000 / 8 * 2  # ... in runs of about 8 steps
    with pytest.raises(WorldmotError, match="action_noise"):
        ScriptedPolicy(ReachExpert(), action_noise=-1)
    env = gym.make("worldmot/Reach-v0")
    noisy = [make_policy("scripted", env, action_noise=0.5, seed=1)]
    # the expert keeps correcting: noisy episodes still reach the target
    successes = 0
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        policy = noisy[0]
        policy.reset(seed=seed)
        done, success = False, False
        while not done:
            obs, _, term, trunc, step_info = env.step(policy.act({**obs, "task": info["instruction"]}))
            done, success = term or trunc, success or step_info["is_success"]
        successes += success
    assert successes >= 9
