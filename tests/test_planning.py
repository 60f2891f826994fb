"""The planner (CEM / MPPI in imagination), the model's AR policy, and ``worldmot eval``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_fixtures import make_model, small_config
from rrd_helpers import Recording
from worldmot.checkpoint import save_model
from worldmot.errors import WorldmotError
from worldmot.model import imagination
from worldmot.planning import Planner, PlannerConfig, goal_distance
from worldmot.policies.model import ModelPolicy
from worldmot.policies.planner import PlannerPolicy

TARGET = torch.tensor([0.6, -0.4])


def quadratic_score(self, context, actions, goal, current=None, goal_state=None, goal_objects=None):
    """Stands in for imagination: the best plan moves by TARGET at every step."""
    err = ((actions - TARGET) ** 2).sum(-1).mean(dim=-1)  # (B, N, H)
    return -err.mean(-1), -err, []


def model_with_state(state_dim: int = 2):
    return make_model(small_config(state_dim=state_dim))


def observation(B: int, size: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"pixels": {"top": rng.integers(0, 256, (B, size, size, 3), dtype=np.uint8)},
            "agent_pos": rng.uniform(-1, 1, (B, 2)).astype(np.float32),
            "task": ["reach the red target", "reach the blue target"][:B]}


# ----------------------------------------------------------------------------------------------------
# The optimiser
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_planner_finds_the_best_action_of_a_known_score(monkeypatch, method):
    monkeypatch.setattr(Planner, "_score", quadratic_score)
    cfg = PlannerConfig(method=method, candidates=64, iterations=5, elites=8)
    planner = Planner(model_with_state(), cfg, -np.ones(2), np.ones(2))
    obs = observation(2)
    actions = planner.plan(obs["task"], obs["pixels"]["top"], obs["agent_pos"])
    assert actions.shape == (2, cfg.execute * 2, 2)  # B, execute * chunk, action_dim
    np.testing.assert_allclose(actions, np.broadcast_to(TARGET.numpy(), actions.shape), atol=0.12)


def test_planner_respects_the_action_bounds(monkeypatch):
    far = torch.tensor([3.0, -3.0])
    monkeypatch.setattr(Planner, "_score", lambda self, c, a, g, cur=None, gs=None, go=None: (
        -((a - far) ** 2).sum(-1).mean(dim=(-1, -2)), -((a - far) ** 2).sum(-1).mean(-1), []))
    planner = Planner(model_with_state(), PlannerConfig(iterations=5), -np.ones(2), np.ones(2))
    obs = observation(1)
    actions = planner.plan(obs["task"][:1], obs["pixels"]["top"], obs["agent_pos"])
    assert actions.min() >= -1 and actions.max() <= 1
    np.testing.assert_allclose(actions[0, 0], [1.0, -1.0], atol=0.1)


def test_warm_start_shifts_the_previous_plan(monkeypatch):
    monkeypatch.setattr(Planner, "_score", quadratic_score)
    planner = Planner(model_with_state(), PlannerConfig(horizon=2, execute=1), -np.ones(2), np.ones(2))
    planner.mean = torch.tensor([[[[0.1, 0.2]], [[0.3, 0.4]]]])  # (B=1, H=2, 1, A)
    shifted = planner._initial_mean(1)
    torch.testing.assert_close(shifted, torch.tensor([[[[0.3, 0.4]], [[0.3, 0.4]]]]))
    planner.reset()
    torch.testing.assert_close(planner._initial_mean(1), torch.zeros(1, 2, 1, 2))


def test_goal_cost_steers_by_the_state_read_off_the_imagined_frame(monkeypatch):
    """cost=goal compares the state the model reads off each imagined frame with the goal image's: with the
    pixels alike for every candidate, the plan goes where the read-out state meets the goal's."""
    model = model_with_state()

    def imagine_frame(im, flow_steps=1, generator=None, noise=None):  # the frame "shows" the first action
        im.state, im.actions = im.actions[:, :2].clone(), None
        return torch.zeros_like(im.last_frame)

    monkeypatch.setattr(imagination, "imagine_frame", imagine_frame)
    monkeypatch.setattr(model, "read_state", lambda hidden: TARGET.expand(hidden.shape[0], -1))  # the goal's
    obs = observation(1)
    plans = {}
    for weight in (1.0, 0.0):
        cfg = PlannerConfig(cost="goal", horizon=1, candidates=64, iterations=5, elites=8, state_weight=weight)
        planner = Planner(model, cfg, -np.ones(2), np.ones(2))
        plans[weight] = planner.plan(obs["task"][:1], obs["pixels"]["top"], obs["agent_pos"], obs["pixels"]["top"])
    np.testing.assert_allclose(plans[1.0][0], np.broadcast_to(TARGET.numpy(), plans[1.0][0].shape), atol=0.12)
    assert np.abs(plans[0.0][0] - TARGET.numpy()).max() > 0.12, "without the state term nothing points at TARGET"


def test_goal_state_is_read_once_per_episode_and_again_when_the_goal_changes():
    model = model_with_state()
    planner = Planner(model, PlannerConfig(cost="goal"), -np.ones(2), np.ones(2))
    obs, other = observation(2, seed=0), observation(2, seed=1)
    goals, new_goals = obs["pixels"]["top"], other["pixels"]["top"]
    first = planner._goal_readout(obs["task"], goals, model.tokenize_frames(goals))[0]
    assert planner._goal_readout(obs["task"], goals.copy(), model.tokenize_frames(goals))[0] is first
    fresh = planner._goal_readout(obs["task"], new_goals, model.tokenize_frames(new_goals))[0]
    want = imagination.start(model, obs["task"], model.tokenize_frames(new_goals)).state
    torch.testing.assert_close(fresh, want)
    assert not torch.allclose(fresh, first)
    renamed = planner._goal_readout(obs["task"][::-1], new_goals, model.tokenize_frames(new_goals))[0]
    assert renamed is not fresh  # the read-out depends on the instruction too


def test_state_distance_ignores_dimensions_the_model_cannot_read():
    model = model_with_state(state_dim=3)
    model.state_read_r2.copy_(torch.tensor([1.0, -0.5, 0.25]))  # R^2 below 0: read worse than the mean
    a, b = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[3.0, 100.0, 2.0]])
    torch.testing.assert_close(model.state_distance(a, b), torch.tensor([(9.0 + 0.25 * 4.0) ** 0.5]))


def test_planner_settings_that_do_not_fit_the_model_are_one_line_errors():
    model = model_with_state()  # n_steps = 3: at most 2 imagined steps
    with pytest.raises(WorldmotError, match="plan.horizon=3"):
        Planner(model, PlannerConfig(horizon=3), -np.ones(2), np.ones(2))
    with pytest.raises(WorldmotError, match="plan.method='beam'"):
        Planner(model, PlannerConfig(method="beam"), -np.ones(2), np.ones(2))
    with pytest.raises(WorldmotError, match="plan.elites"):
        Planner(model, PlannerConfig(elites=40, candidates=32), -np.ones(2), np.ones(2))


# ----------------------------------------------------------------------------------------------------
# In imagination, with a real (small, random) model
# ----------------------------------------------------------------------------------------------------

def test_planning_in_imagination_is_batched_and_repeatable():
    model = model_with_state()
    cfg = PlannerConfig(candidates=8, elites=3, iterations=2, ar_proposals=2)
    obs = observation(2)
    runs = []
    for _ in range(2):
        planner = Planner(model, cfg, -np.ones(2), np.ones(2))
        runs.append(planner.plan(obs["task"], obs["pixels"]["top"], obs["agent_pos"]))
    np.testing.assert_array_equal(runs[0], runs[1])
    info = planner.last
    assert info.actions.shape == (2, 8, 2, 2, 2) and info.scores.shape == (2, 8)
    assert len(info.frames) == 2 and info.frames[0].shape[:2] == (2, 8)
    # the scores are the model's progress: (mean + last) of values in [0, 1]
    assert float(info.scores.min()) >= 0 and float(info.scores.max()) <= 2


def test_planning_over_two_cameras_of_different_sizes_prices_each_camera():
    """A two-camera model plans from both cameras (its model folder names them), imagines both, and its pixel
    terms are each camera's cost averaged: a goal equal to the current frames costs nothing on either camera."""
    model = make_model(small_config(state_dim=2, cameras=2))
    model.trained_on = {"cameras": ["observation.images.top", "observation.images.wrist"]}
    rng = np.random.default_rng(4)
    obs = observation(2)
    obs["pixels"]["wrist"] = rng.integers(0, 256, (2, 12, 20, 3), dtype=np.uint8)  # non-square, another size
    cfg = PlannerConfig(cost="goal", candidates=6, elites=2, iterations=1, pixel_weight=1.0, keep_weight=1.0,
                        state_weight=1.0)
    policy = PlannerPolicy(model, cfg, -np.ones(2), np.ones(2), trace=True)
    policy.reset(seed=0)
    obs["goal"] = {"top": obs["pixels"]["top"], "wrist": obs["pixels"]["wrist"]}
    assert policy.act(obs).shape == (2, 2)
    info = policy.planner.last
    assert info.frames[0].shape == (2, 6, 2 * model.tokens_per_frame, model.frame_tokenizer.token_dim)
    S = model.cfg.sequence.image_size
    assert policy.traces[0].imagined.shape == (2, cfg.horizon, S, 2 * S, 3)  # both cameras, side by side
    frames = [obs["pixels"]["top"], obs["pixels"]["wrist"]]
    now = model.detokenize_frames(model.tokenize_frames(frames)).float()
    assert now.shape == (2, 3, S, 2 * S)
    from worldmot.planning.planner import camera_mean, per_camera
    per = goal_distance(per_camera(now, 2), per_camera(now, 2))
    assert per.shape == (4,) and float(camera_mean(per, 2).abs().max()) == 0.0
    with pytest.raises(WorldmotError, match=r"expected 2 camera\(s\)"):
        Planner(model, PlannerConfig(candidates=4, elites=2, iterations=1), -np.ones(2), np.ones(2)).plan(
            obs["task"], obs["pixels"]["top"], obs["agent_pos"])


def test_candidates_of_one_env_do_not_see_another_envs_context():
    """Planning env 0 alone or beside env 1 scores env 0's candidates identically (shared-cache bugs)."""
    model = model_with_state()
    cfg = PlannerConfig(candidates=4, elites=2, iterations=1)
    obs = observation(2)
    scores = []
    for B in (2, 1):
        planner = Planner(model, cfg, -np.ones(2), np.ones(2))  # one flow step from t=1: no noise enters
        ctx_obs = {k: (v[:B] if k != "pixels" else {"top": v["top"][:B]}) for k, v in obs.items()}
        context = imagination.start(model, ctx_obs["task"], model.tokenize_frames(ctx_obs["pixels"]["top"]),
                                    torch.as_tensor(ctx_obs["agent_pos"]), horizon=2)
        actions = torch.linspace(-1, 1, 4 * 2 * 2 * 2).view(1, 4, 2, 2, 2).expand(B, -1, -1, -1, -1)
        s, _, _ = planner._score(context, actions, None)
        scores.append(s[0])
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-4, atol=1e-5)


def test_goal_distance_is_zero_at_the_goal_and_grows_with_the_offset():
    goal = torch.zeros(1, 3, 32, 32) - 1
    goal[..., 10:14, 10:14] = 1
    shifted = [torch.roll(goal, s, dims=-1) for s in (0, 2, 6, 12)]
    d = goal_distance(torch.cat(shifted), goal.expand(4, -1, -1, -1))
    assert float(d[0]) == 0 and bool((d[1:] > d[:-1]).all()), d


def _disc_image(centre: tuple[float, float], size: int = 32) -> torch.Tensor:
    """(1, 3, size, size): a light floor in [-1, 1] with a dark anti-aliased disc of radius 3 pixels at centre
    (row, col), so that its mass does not depend on where it sits on the pixel grid."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).float().sqrt()
    cover = (3.5 - r).clamp(0, 1)
    return (0.6 - 1.3 * cover).expand(1, 3, size, size).clone()


@pytest.mark.parametrize("start, goal", [((16, 16), (16, 4)), ((7, 16), (27, 16)), ((25, 7), (4, 27))])
def test_goal_distance_ranks_the_step_toward_the_goal_best(start, goal):
    """Of 8 steps of 3 pixels, the one toward a goal 12 to 30 pixels away scores best."""
    angles = torch.arange(8) * torch.pi / 4
    ends = [(start[0] + 3 * float(torch.sin(a)), start[1] + 3 * float(torch.cos(a))) for a in angles]
    d = goal_distance(torch.cat([_disc_image(e) for e in ends]), _disc_image(goal).expand(8, -1, -1, -1))
    to_goal = [((e[0] - goal[0]) ** 2 + (e[1] - goal[1]) ** 2) ** 0.5 for e in ends]
    assert int(d.argmin()) == int(np.argmin(to_goal)), (d, to_goal)


def test_goal_distance_does_not_depend_on_where_the_walls_are():
    """A disc 9 pixels from its goal costs the same in the middle of the image as beside a wall or in a
    corner: blurs evaluated inside the image priced blobs by their distance to the walls, and the planner
    drove the effector into them or kept it away from them."""
    placements = [((12, 12), (12, 21)), ((5, 12), (5, 21)), ((12, 5), (12, 14)), ((26, 17), (26, 26)), ((5, 5), (5, 14))]
    pred = torch.cat([_disc_image(p) for p, _ in placements])
    goal = torch.cat([_disc_image(g) for _, g in placements])
    d = goal_distance(pred, goal)
    torch.testing.assert_close(d, d[:1].expand_as(d), rtol=1e-4, atol=0)


def test_appearance_change_ignores_motion_and_sees_erasure():
    from worldmot.planning.planner import appearance_change

    frame = torch.full((1, 3, 32, 32), 0.6)
    frame[..., 4:10, 4:10] = -0.8  # a dark disc
    moved = torch.roll(frame, (9, 13), dims=(-2, -1))
    ghost = frame.clone()
    ghost[..., 4:10, 4:10] = 0.3  # a faint remnant where the disc was
    assert float(appearance_change(moved, frame)) == pytest.approx(0.0, abs=1e-6)
    assert float(appearance_change(ghost, frame)) > 0.03


# ----------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------

def test_model_policy_plays_out_a_chunk_then_decides_again():
    model = model_with_state()
    policy = ModelPolicy(model, reason=True)
    policy.reset(seed=0)
    calls = []
    decide = policy.decide
    policy.decide = lambda *a: calls.append(1) or decide(*a)
    obs = observation(2)
    actions = [policy.act(obs) for _ in range(5)]  # chunk = 2: decisions at steps 0, 2, 4
    assert len(calls) == 3 and all(a.shape == (2, 2) for a in actions)
    assert isinstance(policy.reasoning, list) and len(policy.reasoning) == 2
    single = {"pixels": {"top": obs["pixels"]["top"][0]}, "agent_pos": obs["agent_pos"][0], "task": obs["task"][0]}
    policy.reset()
    a = policy.act(single)
    assert a.shape == (2,) and isinstance(policy.reasoning, str)
    np.testing.assert_allclose(a, actions[0][0], atol=1e-6)  # batched and single decide alike (greedy)


def test_model_policy_acts_on_an_empty_reasoning_unless_asked_to_reason():
    """By default the chunk follows an empty reasoning (as the planner's proposals): the same greedy actions
    as imagination's write_step without reasoning, and no text; with reason=True the text comes first."""
    model = model_with_state()
    obs = observation(2)
    quiet = ModelPolicy(model)
    quiet.reset(seed=0)
    actions = quiet.act(obs)
    assert quiet.reasoning is None
    im = imagination.start(model, list(obs["task"]), model.tokenize_frames(obs["pixels"]["top"]),
                           torch.as_tensor(obs["agent_pos"]).float(), horizon=1)
    expected, _ = imagination.write_step(im, None, reason=False)
    np.testing.assert_allclose(actions, expected[:, 0].numpy(), atol=1e-6)
    talking = ModelPolicy(model, reason=True)
    talking.reset(seed=0)
    talking.act(obs)
    assert isinstance(talking.reasoning, list) and len(talking.reasoning) == 2


def test_planner_policy_records_its_planning_time():
    model = model_with_state()
    policy = PlannerPolicy(model, PlannerConfig(candidates=4, elites=2, iterations=1), -np.ones(2), np.ones(2))
    policy.reset(seed=1)
    for _ in range(3):
        assert policy.act(observation(2)).shape == (2, 2)
    assert len(policy.plan_seconds) == 2 and all(s > 0 for s in policy.plan_seconds)


# ----------------------------------------------------------------------------------------------------
# worldmot eval
# ----------------------------------------------------------------------------------------------------

def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worldmot", "eval", *args], capture_output=True, text=True, timeout=300)


def test_eval_writes_lerobot_shaped_info_videos_and_a_recording(tmp_path):
    out = tmp_path / "ev"
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "scripted", "--episodes", "3", "--num-envs", "2",
                   "--seed", "7", "--videos", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert [e["seed"] for e in info["per_episode"]] == [7, 8, 9]
    for e in info["per_episode"]:
        assert set(e) >= {"episode_ix", "sum_reward", "max_reward", "success", "seed"}
    agg = info["aggregated"]
    assert agg["pc_success"] == 100.0 and agg["eval_s"] > 0 and agg["eval_ep_s"] > 0
    assert info["video_paths"] == ["videos/eval_episode_0.mp4"] and (out / info["video_paths"][0]).stat().st_size > 1000
    assert (out / "eval.rrd").stat().st_size > 1000
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


def test_eval_of_random_is_far_below_scripted(tmp_path):
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "random", "--episodes", "6", "--num-envs", "6",
                   "--videos", "0", "--no-rrd", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "eval_info.json").read_text())["aggregated"]["pc_success"] <= 50


def test_eval_with_a_model_that_does_not_fit_the_env_fails_in_one_line(tmp_path):
    model = make_model(small_config(action_dim=3, state_dim=2))
    save_model(model, tmp_path / "m")
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "planner", "--checkpoint", str(tmp_path / "m"),
                   "--episodes", "1", "--out", str(tmp_path / "ev"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("worldmot eval: error: model action_dim=3"), res.stderr
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("args, message", [
    (["--env", "worldmot/Nope-v0", "--policy", "random"], "unknown Gymnasium id"),
    (["--env", "worldmot/Reach-v0", "--policy", "model"], "needs --checkpoint"),
    (["--env", "worldmot/Reach-v0", "--policy", "random", "candidates=4"], "for --policy planner only"),
    (["--env", "worldmot/Reach-v0", "--policy", "scripted", "--reason"], "for --policy model only"),
])
def test_eval_bad_input_is_a_one_line_error(tmp_path, args, message):
    res = run_eval(*args, "--episodes", "1", "--out", str(tmp_path / "ev"))
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "ev").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_eval_on_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    save_model(make_model(small_config(state_dim=2)), tmp_path / "m")
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "model", "--checkpoint", str(tmp_path / "m"),
                   "--device", "cuda", "--episodes", "1", "--out", str(tmp_path / "ev"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--device cuda: this torch sees no CUDA device" in res.stderr
    assert not (tmp_path / "ev").exists()


def test_eval_planner_with_a_saved_model_runs_end_to_end(tmp_path):
    model = make_model(small_config(state_dim=2))
    save_model(model, tmp_path / "m")
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "planner", "--checkpoint", str(tmp_path / "m"),
                   "--episodes", "2", "--num-envs", "2", "--videos", "0", "--out", str(tmp_path / "ev"),
                   "candidates=4", "elites=2", "iterations=1")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "ev" / "eval_info.json").read_text())
    assert info["plan"]["candidates"] == 4 and info["aggregated"]["plan_s_median"] > 0


def test_eval_recording_holds_the_planners_imagined_frames_costs_and_chosen_actions(tmp_path):
    cfg = small_config(state_dim=2, image_size=32, patch_size=8)
    save_model(make_model(cfg), tmp_path / "m")
    out = tmp_path / "ev"
    res = run_eval("--env", "worldmot/Reach-v0", "--policy", "planner", "--checkpoint", str(tmp_path / "m"),
                   "--episodes", "2", "--num-envs", "2", "--videos", "0", "--out", str(out),
                   "candidates=5", "elites=2", "iterations=3", "horizon=2")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((out / "eval_info.json").read_text())
    rec = Recording(out / "eval.rrd")
    C = cfg.sequence.chunk
    for i, ep in enumerate(info["per_episode"]):
        root, T = f"episode_{i:03d}", ep["steps"]
        replans = -(-T // C)  # execute=1 chunk: a plan every C steps
        assert rec.rows(f"{root}/camera") == T and rec.rows(f"{root}/action/executed") == T
        assert rec.rows(f"{root}/plan/imagined") == replans
        [strip] = rec.images(f"{root}/plan/imagined")[:1]
        assert strip.shape[0] == 32 and strip.shape[1] >= 2 * 32  # two imagined 32x32 frames side by side
        assert rec.rows(f"{root}/planner/candidates") == replans
        assert len(rec.column(f"{root}/planner/iterations", "BarChart:values")[0][0]) == 3  # one bar per iteration
        assert rec.rows(f"{root}/action/chosen") == T  # the plan's action at every executed step
        chosen = np.array(rec.column(f"{root}/action/chosen", "Scalars:scalars"))
        executed = np.array(rec.column(f"{root}/action/executed", "Scalars:scalars"))
        np.testing.assert_allclose(chosen, executed, atol=1e-6)  # inside the Box: executed as chosen
        assert rec.rows(f"{root}/progress") == replans
        assert rec.static[f"{root}/goal"], "the goal image is in the recording"



# ----------------------------------------------------------------------------------------------------
# Evaluation inside the model
# ----------------------------------------------------------------------------------------------------

def test_imagined_env_starts_from_the_simulator_then_imagines_chunk_by_chunk():
    from worldmot.stepping import collect_episodes
    from worldmot.evaluation.in_model import ImaginedVectorEnv
    from worldmot.envs.make import make_env
    from worldmot.policies import make_policy

    model = make_model(small_config(state_dim=2))
    C = model.cfg.sequence.chunk
    sim = make_env("worldmot/Reach-v0", 2, "sync", image_size=16)
    env = ImaginedVectorEnv(model, sim, max_steps=3 * C, judge="token")
    max_step = sim.get_attr("max_step")[0]  # metres per unit action: the odometry below
    try:
        real, _ = sim.reset(seed=11)
        first = real["pixels"]["top"].copy()
        episodes = collect_episodes(env, make_policy("random", env, seed=0), seed=11)
    finally:
        env.close()
    for b, ep in enumerate(episodes):
        assert len(ep) == 3 * C and ep.truncated  # an untrained model never judges success
        np.testing.assert_array_equal(ep.frames[0], first[b])  # the simulator's start
        for k in range(3):  # one imagined frame per chunk, held until the next
            assert all((ep.frames[k * C + i] == ep.frames[k * C]).all() for i in range(C))
        assert (ep.frames[C] != ep.frames[0]).any()
        assert ((ep.rewards >= 0) & (ep.rewards <= 1)).all()
    # the first imagined frame is the model's own one-step imagination of the first chunk
    actions = torch.as_tensor(np.stack([ep.actions[:C] for ep in episodes]))[:, None]
    frames, _ = imagination.rollout(model, [ep.instruction for ep in episodes], model.tokenize_frames(first), actions,
                                    states=torch.as_tensor(np.stack([ep.states[0] for ep in episodes])))
    pixels = ((model.detokenize_frames(frames[:, 0]).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    for b, ep in enumerate(episodes):
        np.testing.assert_array_equal(ep.frames[C], pixels[b].numpy())
    # the effector's odometry: agent_pos integrates the actions (kinematic control, max_step per unit action)
    ep = episodes[0]
    np.testing.assert_allclose(ep.states[1], np.clip(ep.states[0] + ep.actions[0] * max_step, -1, 1), atol=1e-6)


def test_imagined_env_judges_success_by_the_state_read_off_frame_and_goal(monkeypatch):
    """judge="goal": an episode succeeds at the first imagined frame whose read-out state is within the
    tolerance of the goal image's, and not before (the reset frame is the simulator's, not judged)."""
    from worldmot.stepping import collect_episodes
    from worldmot.evaluation.in_model import ImaginedVectorEnv
    from worldmot.envs.make import make_env
    from worldmot.policies import make_policy

    model = make_model(small_config(state_dim=2))
    C = model.cfg.sequence.chunk
    lengths = {}
    for tolerance in (0.4, 0.6):
        calls = []

        def read_state(hidden, calls=calls):  # reset reads the simulator's frame, the goal images, then imagined ones
            calls.append(len(calls))
            return torch.tensor([0.0, 0.0] if len(calls) == 2 else [0.5, 0.0]).expand(hidden.shape[0], -1)

        monkeypatch.setattr(model, "read_state", read_state)
        sim = make_env("worldmot/Reach-v0", 2, "sync", image_size=16)
        env = ImaginedVectorEnv(model, sim, max_steps=3 * C, judge="goal", goal_tolerance=tolerance)
        try:
            episodes = collect_episodes(env, make_policy("random", env, seed=0), seed=11)
        finally:
            env.close()
        lengths[tolerance] = [(len(ep), ep.success) for ep in episodes]
    assert lengths[0.4] == [(3 * C, False)] * 2  # every imagined frame reads 0.5 away from the goal
    assert lengths[0.6] == [(C, True)] * 2  # judged at the first imagined frame


def test_a_calibrated_goal_tolerance_is_the_models_default_until_the_weights_are_exported_again(tmp_path):
    """The tolerance kept with a model (goal_judge.json) judges its in-model episodes; --goal-tolerance wins; a new
    export of the weights (a resumed training) drops the calibration of the old ones."""
    from worldmot.checkpoint import load_model, write_goal_tolerance
    from worldmot.evaluation.in_model import GOAL_TOLERANCE, ImaginedVectorEnv
    from worldmot.envs.make import make_env

    model = make_model(small_config(state_dim=2))
    save_model(model, tmp_path / "run" / "model")
    write_goal_tolerance(tmp_path / "run", {"tolerance": 0.9})  # a run folder names its model/
    calibrated = load_model(tmp_path / "run")
    assert calibrated.goal_tolerance == 0.9
    for tolerance, expected in ((None, 0.9), (0.5, 0.5)):
        env = ImaginedVectorEnv(calibrated, make_env("worldmot/Reach-v0", 1, "sync", image_size=16), max_steps=2,
                                goal_tolerance=tolerance)
        assert env.goal_tolerance == expected
        env.close()
    save_model(model, tmp_path / "run" / "model")
    assert load_model(tmp_path / "run").goal_tolerance is None
    env = ImaginedVectorEnv(load_model(tmp_path / "run"), make_env("worldmot/Reach-v0", 1, "sync", image_size=16),
                            max_steps=2)
    assert env.goal_tolerance == GOAL_TOLERANCE
    env.close()


def test_eval_in_model_and_the_agreement_report(tmp_path):
    model = make_model(small_config(state_dim=2))
    save_model(model, tmp_path / "m")
    common = ["--env", "worldmot/Reach-v0", "--episodes", "2", "--num-envs", "2", "--videos", "0", "--no-rrd"]
    for policy in ("random", "scripted"):
        res = run_eval(*common, "--policy", policy, "--out", str(tmp_path / f"{policy}-sim"))
        assert res.returncode == 0, res.stderr[-2000:]
        res = run_eval(*common, "--policy", policy, "--in-model", "--checkpoint", str(tmp_path / "m"),
                       "--out", str(tmp_path / f"{policy}-model"))
        assert res.returncode == 0, res.stderr[-2000:]
        info = json.loads((tmp_path / f"{policy}-model" / "eval_info.json").read_text())
        assert info["in_model"] is True and info["checkpoint"] == str(tmp_path / "m")
        assert info["judge"] == "goal" and info["goal_tolerance"] == 0.3
    res = subprocess.run([sys.executable, "-m", "worldmot", "eval-report", str(tmp_path), "--out", str(tmp_path / "r.md")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 2 and {p["policy"][1] for p in report["pairs"]} == {"random", "scripted"}
    assert "Pearson r" in res.stdout
    # one policy run both ways is not a comparison
    res = subprocess.run([sys.executable, "-m", "worldmot", "eval-report", str(tmp_path / "random-sim"),
                          str(tmp_path / "random-model")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "expected at least 2" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_eval(*common, "--policy", "random", "--in-model", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "--in-model needs --checkpoint" in res.stderr


def test_rank_agreement_and_pearson():
    from worldmot.evaluation.agreement import agreement, ranks

    np.testing.assert_array_equal(ranks(np.array([10.0, 0.0, 10.0, 5.0])), [3.5, 1.0, 3.5, 2.0])
    pairs = [{"sim": s, "model": m} for s, m in [(0, 10), (20, 30), (90, 40), (100, 100)]]
    stats = agreement(pairs)
    assert stats["spearman_rho"] == pytest.approx(1.0) and 0.7 < stats["pearson_r"] < 1.0
    flipped = agreement([{"sim": p["sim"], "model": -p["model"]} for p in pairs])
    assert flipped["spearman_rho"] == pytest.approx(-1.0)


def test_two_planners_on_one_checkpoint_are_two_policies():
    from worldmot.evaluation.agreement import pair_up, report_markdown

    def info(in_model, state_weight, success):
        return (None, {"env": "E", "policy": "planner", "checkpoint": "run", "seed": 0, "in_model": in_model,
                       "plan": {"cost": "goal", "state_weight": state_weight}, "aggregated": {"pc_success": success}})

    pairs = pair_up([info(False, 10.0, 90.0), info(False, 0.0, 60.0), info(True, 10.0, 80.0), info(True, 0.0, 40.0)])
    assert sorted((p["sim"], p["model"]) for p in pairs) == [(60.0, 40.0), (90.0, 80.0)]
    text = report_markdown(pairs, {"n": 2, "pearson_r": 1.0, "spearman_rho": 1.0})
    assert "planner cost=goal state_weight=0.0" in text and "planner cost=goal |" in text


def test_agreement_report_says_when_one_side_is_constant():
    from worldmot.evaluation.agreement import agreement, report_markdown

    pairs = [{"policy": ["E", name, "-", False, 0, "-"], "world_model": "m", "sim": s, "model": 0.0}
             for name, s in (("random", 0.0), ("scripted", 100.0))]
    text = report_markdown(pairs, agreement(pairs))
    assert "undefined" in text and "the model gave every one" in text
