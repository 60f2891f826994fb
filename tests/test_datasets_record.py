"""``worldmot record`` on the built-in Reach task: single and vector envs, seeds, resume, errors."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from worldmot.cli import main as cli_main
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.recording import EXPERT_ACTION, record
from worldmot.errors import WorldmotError

ENV = "worldmot/Reach-v0"


def _episode_signature(reader: LeRobotDatasetReader, ep: int) -> tuple:
    t = reader.episode_table(ep)
    return reader.episode(ep).length, tuple(np.round(t["observation.environment_state"][0], 5))


def test_record_single_env(tmp_path):
    res = record(ENV, "scripted", 3, tmp_path / "ds", seed=7, image_size=32, progress=False)
    assert res.total_episodes == 3 and res.steps > 0
    r = LeRobotDatasetReader(tmp_path / "ds")
    assert r.camera_keys == ["observation.images.top"] and r.features["observation.images.top"]["shape"] == (32, 32, 3)
    assert r.robot_type == ENV
    t = r.episode_table(0)
    assert t["next.done"][-1] and not t["next.done"][:-1].any()
    assert t["next.reward"].min() >= 0 and t["next.reward"].max() <= 1
    assert r.tasks[t["task_index"][0]]  # the instruction
    assert all(r.subtasks[s] for s in t["subtask_index"])  # the expert's reasoning
    frames = r.episode_frames(0, "observation.images.top", [0, r.episode(0).length - 1])
    assert frames.shape == (2, 32, 32, 3) and frames.std() > 0


def test_vector_env_and_resume_follow_the_seed_sequence(tmp_path):
    """Episode i is seeded seed + i however it was recorded: 2 workers, or 2 episodes then a resume."""
    record(ENV, "scripted", 4, tmp_path / "vec", seed=11, num_envs=2, image_size=32, progress=False)
    record(ENV, "scripted", 2, tmp_path / "res", seed=11, image_size=32, progress=False)
    assert cli_main(["record", "--env", ENV, "--episodes", "4", "--out", str(tmp_path / "res"), "--seed", "11",
                     "--resume", "--image-size", "32"]) == 0
    a, b = LeRobotDatasetReader(tmp_path / "vec"), LeRobotDatasetReader(tmp_path / "res")
    assert a.num_episodes == b.num_episodes == 4
    for ep in range(4):
        assert _episode_signature(a, ep) == _episode_signature(b, ep)


def test_record_errors(tmp_path, capsys):
    with pytest.raises(WorldmotError, match="unknown Gymnasium id"):
        record("worldmot/Nope-v0", "scripted", 1, tmp_path / "x", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(WorldmotError, match="not empty"):
        record(ENV, "scripted", 1, tmp_path / "full", progress=False)
    assert cli_main(["record", "--env", "worldmot/Nope-v0", "--episodes", "1", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("worldmot record: error:") and "\n" not in err


@pytest.mark.parametrize("env_id, policy", [("worldmot/Reacher-v5", "scripted"), ("worldmot/Pusher-v5", "random")])
def test_wrapped_gymnasium_envs_record_and_window_like_built_in_tasks(tmp_path, env_id, policy):
    from worldmot.datasets.windows import WindowDataset

    res = record(env_id, policy, 2, tmp_path / "ds", seed=1, image_size=32, progress=False)
    r = LeRobotDatasetReader(res.root)
    assert r.num_episodes == 2 and r.camera_keys == ["observation.images.top"]
    assert r.tasks[r.episode_table(0)["task_index"][0]]  # the wrapper's instruction
    ds = WindowDataset(r, n_steps=3, chunk=4)
    item = ds[0]
    assert item["frames"].shape == (3, 32, 32, 3) and item["actions"].shape[1:] == (4, r.features["action"]["shape"][0])
    assert item["instruction"] and len(item["subtasks"]) == 3


def test_killed_worldmot_record_with_workers_loads_and_resumes(tmp_path):
    """SIGKILL to the whole `worldmot record --num-envs 2` process group mid-recording, then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "worldmot", "record", "--env", ENV, "--episodes", "40", "--out", str(out),
           "--seed", "3", "--num-envs", "2", "--image-size", "32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if LeRobotDatasetReader(out).num_episodes >= 3:
                    break
            except WorldmotError:
                pass  # no episode committed yet
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    r = LeRobotDatasetReader(out)
    kept = r.num_episodes
    assert 3 <= kept < 40
    for ep in range(kept):
        n = r.episode(ep).length
        assert r.episode_frames(ep, "observation.images.top", [0, n - 1]).shape == (2, 32, 32, 3)
    total = kept + 1
    assert cli_main(["record", "--env", ENV, "--episodes", str(total), "--out", str(out), "--seed", "3",
                     "--image-size", "32", "--resume"]) == 0
    assert LeRobotDatasetReader(out).num_episodes == total


@pytest.mark.parametrize("policy, kwargs", [("scripted", {"action_noise": 0.5}), ("random", {})])
def test_every_step_records_what_the_expert_would_do(tmp_path, policy, kwargs):
    """expert_action is the scripted expert's action from the recorded observation, whichever policy acted:
    under exploration noise or a random policy it differs from the executed action."""
    from worldmot.envs.experts import ReachExpert

    record(ENV, policy, 2, tmp_path / "ds", seed=3, image_size=32, progress=False, policy_kwargs=kwargs)
    r = LeRobotDatasetReader(tmp_path / "ds")
    assert r.features["expert_action"]["shape"] == r.features["action"]["shape"]
    t = r.episode_table(0)
    tasks = [r.tasks[int(i)] for i in t["task_index"]]
    expected, _ = ReachExpert()(t["observation.state"], t["observation.environment_state"], tasks)
    np.testing.assert_allclose(t["expert_action"], expected, atol=1e-6)
    assert np.abs(t["expert_action"] - t["action"]).max() > 0.1


def test_resuming_a_dataset_without_expert_actions_keeps_its_columns(tmp_path):
    record(ENV, "scripted", 1, tmp_path / "ds", seed=3, image_size=32, progress=False)
    info = tmp_path / "ds" / "meta" / "info.json"
    meta = json.loads(info.read_text())
    del meta["features"][EXPERT_ACTION]  # as recorded before the column existed
    info.write_text(json.dumps(meta))
    for f in (tmp_path / "ds" / "data").rglob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns([EXPERT_ACTION]), f)
    record(ENV, "scripted", 2, tmp_path / "ds", seed=3, image_size=32, progress=False, resume=True)
    r = LeRobotDatasetReader(tmp_path / "ds")
    assert r.num_episodes == 2 and EXPERT_ACTION not in r.features
    assert EXPERT_ACTION not in r.episode_table(1)
