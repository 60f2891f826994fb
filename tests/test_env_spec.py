"""Any Gymnasium env from a spec (envs/spec.py, envs/spec_env.py, envs/make.py): a small env of the tests' own
(spec_dot_env.py, no MuJoCo) recorded, trained on, evaluated in the simulator and in the model, driven only
by a YAML spec; Gymnasium's own ids accepted as they are; a wrong spec is one line before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worldmot.cli import main as cli
from worldmot.envs.make import make_env, max_episode_steps

from test_training import SMALL

SPEC = """\
gym_id: spec_dot_env:SpecDot-v0
image_size: 16
render_fps: 10
max_episode_steps: 20
instructions: ["move the red dot onto the green dot", "go to the green dot"]
held_out_instructions: ["bring the red dot to the green one"]
success: is_success
progress: info:closeness
state: [obs.position]
environment_state: [obs.goal]
expert: reach
expert_kwargs: {max_step: 0.08}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "dot.yaml"
    path.write_text(SPEC)
    return path


def test_the_spec_gives_the_contract(spec):
    env = make_env(str(spec), held_out=True)
    obs, info = env.reset(seed=3)
    assert obs["pixels"]["top"].shape == (16, 16, 3) and obs["pixels"]["top"].dtype == np.uint8
    assert obs["agent_pos"].shape == (2,) and obs["environment_state"].shape == (2,)
    assert obs["keypoints"].shape == (0,)  # no MuJoCo: no keypoints
    assert info["instruction"] == "bring the red dot to the green one" and env.metadata["render_fps"] == 10
    inner = env.unwrapped.inner
    np.testing.assert_array_equal(obs["agent_pos"], inner.position.astype(np.float32))
    _, reward, _, _, info = env.step(np.zeros(2, np.float32))
    assert reward == info["progress"] and 0.0 < reward < 1.0 and not info["is_success"]
    assert max_episode_steps(str(spec)) == 20 and not env.unwrapped.has_goal_image
    env.close()
    # frame_skip repeats each action: two of the dot's steps per decision
    env = make_env(str(spec), spec_overrides=["frame_skip=2"])
    obs, _ = env.reset(seed=3)
    after, *_ = env.step(np.full(2, 0.5, np.float32))
    np.testing.assert_allclose(after["agent_pos"] - obs["agent_pos"], 0.08, atol=1e-6)
    env.close()


def test_record_train_evaluate_from_a_spec_alone(spec, tmp_path):
    from worldmot.checkpoint import load_model
    from worldmot.evaluation.run import evaluate
    from worldmot.recording import record
    from worldmot.training.loop import train
    from worldmot.training.settings import load_train_config

    data = tmp_path / "data"
    res = record(str(spec), "scripted", 4, data, progress=False, policy_kwargs={"action_noise": 0.3})
    info = json.loads((data / "meta" / "info.json").read_text())
    assert res.total_episodes == 4 and info["robot_type"] == str(spec) and info["fps"] == 10
    assert "expert_action" in info["features"] and "observation.keypoints" not in info["features"]
    run = train(load_train_config([f"data.root={data}", f"run_dir={tmp_path / 'run'}", *SMALL, "steps=3"]))
    model = load_model(run)
    scripted = evaluate(str(spec), "scripted", tmp_path / "scripted", episodes=2, num_envs=2, videos=0, rrd=False)
    assert scripted["aggregated"]["pc_success"] == 100.0
    policy = evaluate(str(spec), "model", tmp_path / "model", model=model, episodes=2, num_envs=2, videos=1)
    assert policy["aggregated"]["n_episodes"] == 2 and (tmp_path / "model" / "eval.rrd").exists()
    # no goal image in this spec: the in-model judge is the success token, and says so
    dreamt = evaluate(str(spec), "random", tmp_path / "in_model", model=model, episodes=2, num_envs=2, videos=0,
                      rrd=False, in_model=True)
    assert dreamt["in_model"] and dreamt["judge"] == "token"
    assert all(ep["steps"] <= 20 for ep in dreamt["per_episode"])


def test_gymnasium_ids_as_they_are(tmp_path, capsys):
    assert cli(["record", "--env", "Reacher-v5", "--policy", "random", "--episodes", "2",
                "--out", str(tmp_path / "reacher")]) == 0
    info = json.loads((tmp_path / "reacher" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == 100 and info["fps"] == 50
    # module:Id imports the module that registers the id
    assert cli(["record", "--env", "spec_dot_env:SpecDot-v0", "--policy", "random", "--episodes", "2",
                "--out", str(tmp_path / "dot"), "--env-set", "render_fps=10"]) == 0
    assert json.loads((tmp_path / "dot" / "meta" / "info.json").read_text())["total_episodes"] == 2


@pytest.mark.parametrize("args, message", [
    (["--env", "NoSuch-v0"], "--env 'NoSuch-v0': unknown Gymnasium id"),
    (["--env-set", "gym_id=NoSuch-v0"], "gym_id='NoSuch-v0': unknown Gymnasium id"),
    (["--env-set", "success=done_flag"], "success='done_flag': the step's info has no such key"),
    (["--env-set", "state=[obs.velocity]"], "state entry 'obs.velocity': the observation has no key 'velocity'"),
    (["--env-set", "camera.source=mujoco"], "camera.source=mujoco: spec_dot_env:SpecDot-v0 is not a MuJoCo env"),
    (["--env-set", "keypoints=[hand]"], "keypoints: spec_dot_env:SpecDot-v0 is not rendered by a MuJoCo camera"),
    (["--env-set", "imag_size=3"], "unknown config key 'imag_size'"),
    (["--env", "Reacher-v5", "--env-set", "camera.name=nocam"], "camera.name='nocam': Reacher-v5 has no such camera"),
    (["--env", "Reacher-v5", "--env-set", "environment_state=[body:nobody]"],
     "environment_state entry 'body:nobody': the model has no body 'nobody'"),
    (["--policy", "scripted", "--env-set", "expert=''"], "policy 'scripted': this env has no scripted expert"),
])
def test_a_wrong_spec_is_one_line_before_anything_is_written(spec, tmp_path, capsys, args, message):
    env = ["--env", str(spec)] if "--env" not in args else []
    policy = [] if "--policy" in args else ["--policy", "random"]
    out = tmp_path / "out"
    assert cli(["record", *env, *policy, *args, "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name, task", [("reacher-v5", "worldmot/Reacher-v5"), ("pusher-v5", "worldmot/Pusher-v5")])
def test_a_builtin_spec_by_name_is_the_registered_task(name, task):
    by_spec, registered = make_env(name, image_size=16), make_env(task, image_size=16)
    for env in (by_spec, registered):
        env.reset(seed=1)
    action = np.full(registered.action_space.shape, 0.3, np.float32)
    (a, *_, info_a), (b, *_, info_b) = by_spec.step(action), registered.step(action)
    for key in ("agent_pos", "environment_state", "keypoints"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["pixels"]["top"], b["pixels"]["top"])
    np.testing.assert_array_equal(by_spec.unwrapped.render_goal(), registered.unwrapped.render_goal())
    assert info_a == info_b and max_episode_steps(name) == max_episode_steps(task)


def test_a_model_trained_with_the_environment_state_reads_it_in_the_simulator_and_in_the_model(spec, tmp_path):
    """data.environment_state_key: the policies' state is agent_pos then environment_state, as in training; in
    the model both are read off the imagined frame, so the scripted expert acts on the imagined goal."""
    import torch

    from worldmot.checkpoint import load_model
    from worldmot.envs.make import make_env as make
    from worldmot.evaluation.in_model import ImaginedVectorEnv
    from worldmot.evaluation.run import evaluate
    from worldmot.recording import record
    from worldmot.training.loop import train
    from worldmot.training.settings import load_train_config

    data = tmp_path / "data"
    record(str(spec), "scripted", 4, data, progress=False, policy_kwargs={"action_noise": 0.3})
    run = train(load_train_config([f"data.root={data}", f"run_dir={tmp_path / 'run'}", *SMALL, "steps=2",
                                   "data.environment_state_key=observation.environment_state"]))
    model = load_model(run)
    assert model.cfg.sequence.state_dim == 4 and model.trained_on["state_keys"][1] == "observation.environment_state"
    for policy in ("model", "planner"):
        result = evaluate(str(spec), policy, tmp_path / policy, model=model, episodes=2, num_envs=2, videos=0, rrd=False)
        assert result["aggregated"]["n_episodes"] == 2
    env = ImaginedVectorEnv(model, make(str(spec), 2, "sync"), max_steps=4, judge="token")
    obs, _ = env.reset(seed=5)
    start_goal = obs["environment_state"].copy()
    obs, *_ = env.step(np.zeros((2, 2), np.float32))
    obs, *_ = env.step(np.zeros((2, 2), np.float32))  # a whole chunk: one imagined frame
    read = (env.im.state * model.state_std + model.state_mean).float().numpy()
    np.testing.assert_allclose(np.concatenate([obs["agent_pos"], obs["environment_state"]], -1), read, rtol=1e-6)
    assert not np.array_equal(obs["environment_state"], start_goal)
    env.close()
