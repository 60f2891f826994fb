"""A dataset written by LeRobot itself (tests/fixtures/lerobot_v30_tiny, tools/checks/make_lerobot_fixture.py):
two AV1 cameras of different sizes, observation.state and observation.environment_state, next.reward,
next.success, two tasks, episodes of 5, 9 and 3 frames, no keypoints. worldmot trains on it, evaluates in
the model from its episodes, and shows it in Rerun."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets_helpers import features, write_dataset
from rrd_helpers import Recording
from test_training import SMALL
from worldmot.cli import main as cli_main
from worldmot.viz.dataset import dataset_to_rrd

FIXTURE = Path(__file__).parent / "fixtures" / "lerobot_v30_tiny"
TASKS = ["task number 0", "task number 1"]


def train(run: Path, *extra: str) -> dict:
    """A 2-step run on the fixture (the keypoint loss off: it has no keypoints); its model_meta.json."""
    args = [f"data.root={FIXTURE}", f"run_dir={run}", *SMALL, "steps=2", "val.full=false", "model.lambda_keypoint=0",
            *extra]
    assert cli_main(["train", *args]) == 0
    return json.loads((run / "model" / "model_meta.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("lerobot_written") / "run"
    train(run)
    return run


def evaluate(run: Path, out: Path, policy: str, *extra: str) -> dict:
    args = ["eval", "--dataset", str(FIXTURE), "--in-model", "--checkpoint", str(run), "--policy", policy,
            "--episodes", "3", "--videos", "1", "--out", str(out), *extra]
    assert cli_main(args) == 0
    return json.loads((out / "eval_info.json").read_text())


def test_trains_on_both_cameras_without_its_environment_state(run):
    meta = json.loads((run / "model" / "model_meta.json").read_text())["trained_on"]
    assert meta["cameras"] == ["observation.images.top", "observation.images.wrist"]
    assert meta["state_keys"] == ["observation.state"] and "observation.environment_state" not in meta["features"]
    config = (run / "model" / "config.yaml").read_text()
    assert "cameras: 2" in config and "state_dim: 3" in config


def test_environment_state_is_read_when_a_key_asks(tmp_path):
    meta = train(tmp_path / "run", "data.environment_state_key=observation.environment_state")["trained_on"]
    assert meta["state_keys"] == ["observation.state", "observation.environment_state"]
    assert meta["features"]["observation.environment_state"] == [5]
    assert "state_dim: 8" in (tmp_path / "run" / "model" / "config.yaml").read_text()
    info = evaluate(tmp_path / "run", tmp_path / "eval", "random")  # the starts carry both states
    assert info["aggregated"]["n_episodes"] == 3
    # the AR policy reads agent_pos then environment_state, as the model's state was trained
    info = evaluate(tmp_path / "run", tmp_path / "eval_model", "model", "--judge", "token")
    assert info["aggregated"]["n_episodes"] == 3


@pytest.mark.parametrize("policy, extra", [("model", ["--judge", "token"]),
                                           ("planner", ["cost=goal", "candidates=4", "iterations=1", "elites=2"])])
def test_evaluates_in_the_model_from_the_dataset_episodes(run, tmp_path, policy, extra):
    info = evaluate(run, tmp_path / policy, policy, *extra)
    assert info["env"] == "dataset/lerobot_v30_tiny" and info["dataset"] == str(FIXTURE) and info["in_model"]
    assert info["judge"] == ("token" if policy == "model" else "goal")
    episodes = info["per_episode"]
    assert [e["instruction"] for e in episodes] == [TASKS[0], TASKS[1], TASKS[0]]  # episodes 0, 1, 2 in order
    assert all(1 <= e["steps"] <= 9 for e in episodes)  # at most the longest episode
    assert info["overall"]["n_episodes"] == 3 and (tmp_path / policy / "eval.rrd").is_file()
    if policy == "planner":
        assert info["plan"]["cost"] == "goal"  # toward the episodes' last frames, both cameras


def test_a_dataset_that_does_not_fit_the_model_is_one_line(run, tmp_path, capsys):
    other = tmp_path / "one_camera"
    write_dataset(other, [4, 4], features(size=(16, 16)))
    base = ["eval", "--in-model", "--checkpoint", str(run), "--policy", "random", "--out", str(tmp_path / "x")]
    for args, message in ((["--dataset", str(other)], "no camera 'observation.images.wrist', which the model"),
                          (["--dataset", str(FIXTURE), "--env", "worldmot/Reach-v0"], "expected --env ENV"),
                          ([], "expected --env ENV")):
        assert cli_main([*base, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert cli_main(["eval", "--dataset", str(FIXTURE), "--policy", "random", "--checkpoint", str(run)]) == 2
    assert "--in-model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_viz_shows_both_cameras_states_reward_success_and_task(tmp_path):
    out = tmp_path / "fixture.rrd"
    assert dataset_to_rrd(FIXTURE, out, progress=False).frames == 17
    r = Recording(out)
    for ep, n in enumerate([5, 9, 3]):
        root = f"episode_{ep:03d}"
        for e in ("state", "environment_state", "reward", "success", "cameras/top", "cameras/wrist"):
            assert r.rows(f"{root}/{e}") == n, e
        assert [f.shape for f in r.images(f"{root}/cameras/top")] == [(32, 48, 3)] * n
        assert [f.shape for f in r.images(f"{root}/cameras/wrist")] == [(24, 32, 3)] * n
        env_state = np.asarray(r.column(f"{root}/environment_state", "Scalars:scalars"))
        np.testing.assert_allclose(env_state, np.arange(5)[None] * np.arange(n)[:, None] + ep)
        success = np.asarray(r.column(f"{root}/success", "Scalars:scalars")).ravel()
        assert success.tolist() == [0] * (n - 1) + [1]
        assert r.column(f"{root}/instruction", "TextLog:text") == [[TASKS[ep % 2]]]
