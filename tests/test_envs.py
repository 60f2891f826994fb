"""The built-in tasks, the wrapped Gymnasium envs, the experts and the episode collector."""
from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldmot.envs  # noqa: F401  (registers the ids)
from worldmot.envs import instructions, make_vec
from hypothesis import given
from hypothesis import strategies as st

from worldmot.reasoning import format_position, positions_in
from worldmot.stepping import collect_episodes
from worldmot.envs.tabletop import VIEW
from worldmot.policies import make_policy

BUILT_IN = ["worldmot/Reach-v0", "worldmot/Push-v0"]


@pytest.fixture(scope="module", params=BUILT_IN)
def env(request):
    e = gym.make(request.param, render_mode="rgb_array")
    yield e
    e.close()


@pytest.mark.parametrize("env_id", BUILT_IN + ["worldmot/Reacher-v5", "worldmot/Pusher-v5"])
def test_check_env(env_id):
    e = gym.make(env_id)
    check_env(e.unwrapped)
    assert e.unwrapped.metadata["render_modes"] == ["rgb_array"]
    e.close()


def test_observation_contract(env):
    obs, info = env.reset(seed=1)
    assert obs["pixels"]["top"].shape == (64, 64, 3) and obs["pixels"]["top"].dtype == np.uint8
    assert obs["agent_pos"].shape == (2,) and obs["agent_pos"].dtype == np.float32
    assert env.observation_space.contains(obs)
    assert info["instruction"] == env.unwrapped.instruction and not info["is_success"]
    obs, reward, terminated, truncated, info = env.step(np.ones(2, np.float32))
    assert reward == pytest.approx(info["progress"]) and 0.0 <= reward <= 1.0
    # a full-speed step moves the effector by max_step in each axis (or stops at the workspace edge)
    assert np.abs(obs["agent_pos"]).max() <= 0.45 + 1e-6


def test_keypoints_land_on_the_named_objects_in_the_frame(env):
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        frame, uv = obs["pixels"]["top"].astype(np.float64) / 255, obs["keypoints"].reshape(-1, 2)
        named = instructions.parse_colours(info["instruction"])  # Reach: the target; Push: block, pad
        assert len(uv) == len(named) + 1  # then the effector
        for (u, v), colour in zip(uv, named):
            pixel = frame[int(v * 64), int(u * 64)]
            assert np.abs(pixel - np.array(instructions.COLOURS[colour][:3])).max() < 0.2, (seed, colour, pixel)
        u, v = uv[-1]
        assert frame[int(v * 64), int(u * 64)].max() < 0.3, (seed, "effector", frame[int(v * 64), int(u * 64)])  # dark


def test_seeded_reset_is_deterministic(env):
    a, ia = env.reset(seed=7)
    env.step(env.action_space.sample())
    b, ib = env.reset(seed=7)
    assert ia["instruction"] == ib["instruction"]
    np.testing.assert_array_equal(a["pixels"]["top"], b["pixels"]["top"])
    np.testing.assert_array_equal(a["environment_state"], b["environment_state"])
    c, _ = env.reset(seed=8)
    assert not np.array_equal(a["environment_state"], c["environment_state"])


def _wording(text: str) -> str:
    return re.sub(r"\b(" + "|".join(instructions.COLOURS) + r")\b", "<c>", text)


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_instructions_vary_and_held_out_is_disjoint(env_id):
    train, held = gym.make(env_id), gym.make(env_id, held_out_instructions=True)
    seen = {_wording(train.reset(seed=s)[1]["instruction"]) for s in range(30)}
    seen_held = {_wording(held.reset(seed=s)[1]["instruction"]) for s in range(30)}
    assert len(seen) >= 3 and len(seen_held) >= 2
    assert not seen & seen_held
    colours = {tuple(instructions.parse_colours(train.reset(seed=s)[1]["instruction"])) for s in range(30)}
    assert len(colours) >= 3  # which object is named varies too


def test_render_goal(env):
    obs, _ = env.reset(seed=3)
    goal = env.unwrapped.render_goal()
    assert goal.shape == (64, 64, 3) and goal.dtype == np.uint8
    assert np.abs(goal.astype(int) - obs["pixels"]["top"]).sum() > 0
    # the state is restored
    np.testing.assert_array_equal(env.render(), obs["pixels"]["top"])
    np.testing.assert_array_equal(env.unwrapped._observation()["pixels"]["top"], obs["pixels"]["top"])


def test_effector_halo_is_drawn_and_never_collides(env):
    """The effector shows as a 7-8 pixel dark disc (a 4-pixel sphere was erased by the world model), which
    must not change the physics: it has no contacts, and the disc's pixels are the darkest in the frame."""
    import mujoco

    u = env.unwrapped
    halo = mujoco.mj_name2id(u.model, mujoco.mjtObj.mjOBJ_GEOM, "effector_halo")
    assert halo >= 0 and u.model.geom_contype[halo] == 0 and u.model.geom_conaffinity[halo] == 0
    obs, _ = env.reset(seed=5)
    frame = obs["pixels"]["top"].astype(int).sum(-1)
    x, y = u.effector_xy
    px = u.image_size / VIEW  # the top camera shows [-VIEW/2, VIEW/2]^2, y up
    col, row = int((x + VIEW / 2) * px), int((VIEW / 2 - y) * px)
    dark = frame < 200
    assert dark.sum() >= 30  # a disc of radius ~3.8 px (the sphere alone: ~12 px)
    rows, cols = np.nonzero(dark)
    assert abs(rows.mean() - row) <= 2 and abs(cols.mean() - col) <= 2


def test_image_size_kwarg():
    e = gym.make("worldmot/Reach-v0", image_size=96)
    obs, _ = e.reset(seed=0)
    assert obs["pixels"]["top"].shape == (96, 96, 3) and e.unwrapped.render_goal().shape == (96, 96, 3)


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_expert_succeeds(env_id):
    e = gym.make(env_id)
    policy = make_policy("scripted", e)
    episodes = [collect_episodes(e, policy, seed=1000 + s) for s in range(20)]
    assert np.mean([ep.success for ep in episodes]) >= 0.95
    ep = episodes[0]
    assert ep.terminated and ep.progress[-1] == 1.0 and ep.progress[0] < 1.0
    assert np.all((ep.rewards >= 0) & (ep.rewards <= 1))
    # the reasoning says where the named object is, to the centimetre (Reach: the target, Push: the block)
    named = np.stack([positions_in(t)[0] for t in ep.subtasks])
    assert np.abs(named - ep.environment_states[:, :2]).max() <= 0.005 + 1e-9
    if "Reach" in env_id:
        assert all(instructions.parse_colours(ep.instruction)[0] in t for t in ep.subtasks)
    assert ep.frames.shape == (len(ep), 64, 64, 3) and ep.actions.shape == (len(ep), 2)


@given(st.lists(st.tuples(st.floats(-0.99, 0.99), st.floats(-0.99, 0.99)), max_size=3))
def test_reasoning_positions_round_trip_to_the_centimetre(points):
    text = " then ".join(f"move to red at {format_position(p)}" for p in points)
    assert positions_in(text).shape == (len(points), 2)
    assert np.abs(positions_in(text) - np.array(points).reshape(-1, 2)).max(initial=0) <= 0.005 + 1e-9
    assert len(positions_in("move to the red target")) == 0


@pytest.mark.slow
@pytest.mark.parametrize("env_id", BUILT_IN + ["worldmot/Reacher-v5"])
def test_expert_succeeds_100_seeds(env_id):
    e = gym.make(env_id)
    policy = make_policy("scripted", e)
    assert np.mean([collect_episodes(e, policy, seed=s).success for s in range(100)]) >= 0.95


def test_random_policy_rarely_succeeds_push():
    e = gym.make("worldmot/Push-v0")
    policy = make_policy("random", e, seed=0)
    assert sum(collect_episodes(e, policy, seed=s, max_steps=40).success for s in range(3)) <= 1


def test_async_vector_env_and_vector_episodes():
    env = make_vec("worldmot/Reach-v0", num_envs=2)
    try:
        obs, info = env.reset(seed=0)
        assert obs["pixels"]["top"].shape == (2, 64, 64, 3) and len(info["instruction"]) == 2
        obs, reward, terminated, truncated, info = env.step(np.zeros((2, 2), np.float32))
        assert reward.shape == (2,) and info["is_success"].shape == (2,)
        episodes = collect_episodes(env, make_policy("scripted", env), seed=10, goal_frame=True)
        assert len(episodes) == 2 and all(ep.success for ep in episodes)
        assert all(ep.goal_frame.shape == (64, 64, 3) for ep in episodes)
        single = collect_episodes(gym.make("worldmot/Reach-v0"), make_policy("scripted", env), seed=11)
        np.testing.assert_allclose(single.actions, episodes[1].actions, atol=1e-6)  # sub-env 1 got seed 11
    finally:
        env.close()


def test_reacher_wrapper_contract():
    e = gym.make("worldmot/Reacher-v5")
    obs, info = e.reset(seed=0)
    assert obs["pixels"]["top"].shape == (64, 64, 3)
    assert obs["agent_pos"].shape == (8,) and obs["environment_state"].shape == (4,)
    np.testing.assert_allclose(obs["agent_pos"][6:], obs["environment_state"][2:])  # the fingertip, both ways
    assert info["instruction"] and not info["is_success"] and 0.0 <= info["progress"] < 1.0
    goal = e.unwrapped.render_goal()
    assert goal.shape == (64, 64, 3) and np.abs(goal.astype(int) - obs["pixels"]["top"]).sum() > 0
    assert e.spec.max_episode_steps == 50
    policy = make_policy("scripted", e)
    results = [collect_episodes(e, policy, seed=s) for s in range(10)]
    assert np.mean([ep.success for ep in results]) >= 0.9
    assert all(ep.terminated for ep in results if ep.success)


def test_reacher_keypoints_are_where_the_camera_draws_target_and_fingertip():
    e = gym.make("worldmot/Reacher-v5", image_size=128)
    for seed in range(5):
        obs, _ = e.reset(seed=seed)
        for _ in range(5):  # the arm away from its start
            obs, *_ = e.step(e.action_space.sample())
        frame, uv = obs["pixels"]["top"].astype(np.float64), obs["keypoints"].reshape(2, 2) * 128
        red = frame[..., 0] - frame[..., 1] > 50  # the target's disc (shaded); the walls and the arm's root too
        red[:12], red[-12:], red[:, :12], red[:, -12:], red[57:71, 57:71] = False, False, False, False, False
        ys, xs = np.nonzero(red)
        assert np.hypot(xs.mean() + 0.5 - uv[0, 0], ys.mean() + 0.5 - uv[0, 1]) < 1.0, seed
        r, g, b = frame[int(uv[1, 1]), int(uv[1, 0])]
        assert g - r > 60 and b - r > 40, (seed, "fingertip (teal, shaded)", r, g, b)


def test_pusher_wrapper_contract():
    e = gym.make("worldmot/Pusher-v5")
    obs, info = e.reset(seed=0)
    assert obs["agent_pos"].shape == (14,) and obs["environment_state"].shape == (6,)
    obs, reward, *_ = e.step(e.action_space.sample())
    assert 0.0 <= reward <= 1.0 and e.observation_space.contains(obs)
    assert e.unwrapped.render_goal().shape == (64, 64, 3)


def test_plain_gymnasium_make_vec_async_in_a_fresh_process():
    """What a Gymnasium user types, with the default start method, in a process that has not rendered."""
    import subprocess
    import sys

    code = ("import gymnasium as gym, numpy as np, worldmot.envs\n"
            "env = gym.make_vec('worldmot/Push-v0', num_envs=2, vectorization_mode='async')\n"
            "obs, info = env.reset(seed=[3, 4])\n"
            "obs, r, term, trunc, info = env.step(env.action_space.sample())\n"
            "assert obs['pixels']['top'].shape == (2, 64, 64, 3) and obs['pixels']['top'].std() > 0\n"
            "assert len(info['instruction']) == 2 and r.shape == (2,)\n"
            "env.close(); print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.parametrize("platform,preset,expected", [("linux", None, "egl"), ("linux", "osmesa", "osmesa"),
                                                      ("darwin", None, None), ("darwin", "glfw", "glfw")])
def test_mujoco_gl_is_chosen_only_on_linux_and_only_when_unset(platform, preset, expected):
    import os
    import subprocess
    import sys

    code = (f"import os, sys; sys.platform = {platform!r}; import worldmot.envs; "
            "print(os.environ.get('MUJOCO_GL'))")
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    if preset:
        env["MUJOCO_GL"] = preset
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


@pytest.mark.parametrize("env_id", ["worldmot/Reach-v0", "worldmot/Reacher-v5"])
def test_the_instruction_is_where_lerobot_reads_a_policys_language_input(env_id):
    # LeRobot's env utilities: env.call("task_description") when the env has it, else env.call("task")
    env = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
    _, info = env.reset(seed=3)
    assert list(env.call("task_description")) == list(env.call("task")) == list(info["instruction"])
    assert all(isinstance(t, str) and t for t in env.call("task_description"))
    env.close()


@pytest.mark.parametrize("env_id", ["worldmot/Reach-v0", "worldmot/Reacher-v5"])
def test_render_mode_defaults_as_gymnasiums_envs_do(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.render_mode is None
    assert env.render() is None  # no render mode: nothing rendered on request ...
    assert obs["pixels"]["top"].shape == (64, 64, 3) and obs["pixels"]["top"].any()  # ... the frames are observed
    env.close()
    env = gym.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs["pixels"]["top"])
    env.close()
