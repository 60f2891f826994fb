"""LeRobot v3.0 writer and reader: layout, round trip, rolling, resume, crash safety, other writers' data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets_helpers import FPS, features, frame, pixel, write_dataset, write_v21
from worldmot.datasets import format as fmt
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.datasets.writer import LeRobotWriter
from worldmot.errors import WorldmotError

FIXTURE = Path(__file__).parent / "fixtures" / "lerobot_v30_tiny"
CAM = "observation.images.top"


def test_layout_matches_lerobot_v30(tmp_path):
    write_dataset(tmp_path, [4, 6, 3])
    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["robot_type"] == "test"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 13, 2)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == fmt.DATA_PATH and info["video_path"] == fmt.VIDEO_PATH
    assert {"data_files_size_in_mb", "video_files_size_in_mb"} <= set(info)
    assert info["features"][CAM]["names"] == ["height", "width", "channels"]
    assert info["features"][CAM]["info"]["video.pix_fmt"] == "yuv420p"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "subtask_index"):
        assert key in info["features"]

    tasks = pd.read_parquet(tmp_path / "meta/tasks.parquet")
    assert tasks.index.name == "task" and list(tasks.index) == ["task 0", "task 1"]
    assert list(tasks["task_index"]) == [0, 1]
    subtasks = pd.read_parquet(tmp_path / "meta/subtasks.parquet")
    assert subtasks.index.name == "subtask" and list(subtasks["subtask_index"]) == list(range(len(subtasks)))

    eps = pq.read_table(tmp_path / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in eps] == [0, 1, 2] and [e["length"] for e in eps] == [4, 6, 3]
    assert [e["tasks"] for e in eps] == [["task 0"], ["task 1"], ["task 0"]]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 4), (4, 10), (10, 13)]
    assert [e[f"videos/{CAM}/from_timestamp"] for e in eps] == pytest.approx([0.0, 0.4, 1.0])
    assert [e[f"videos/{CAM}/to_timestamp"] for e in eps] == pytest.approx([0.4, 1.0, 1.3])
    for key in ("data/chunk_index", "data/file_index", f"videos/{CAM}/chunk_index", f"videos/{CAM}/file_index",
                "meta/episodes/chunk_index", "meta/episodes/file_index", "stats/action/q99", f"stats/{CAM}/mean"):
        assert key in eps[0]
    assert np.asarray(eps[0][f"stats/{CAM}/mean"]).shape == (3, 1, 1)

    data = pq.read_table(tmp_path / "data/chunk-000/file-000.parquet")
    assert CAM not in data.column_names
    assert data["index"].to_pylist() == list(range(13))
    assert data["timestamp"].to_pylist() == pytest.approx([i / FPS for n in (4, 6, 3) for i in range(n)])

    stats = json.loads((tmp_path / "meta/stats.json").read_text())
    for key in ("action", "observation.state", "next.reward", CAM):
        assert {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"} <= set(stats[key])
    assert np.asarray(stats[CAM]["mean"]).shape == (3, 1, 1)
    assert stats["next.reward"]["max"] == pytest.approx([1.0]) and stats["action"]["count"] == [13]
    assert not list(tmp_path.rglob("*.tmp"))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), cams=st.integers(1, 2),
       state_dim=st.integers(1, 4), extra=st.booleans(), per_file=st.integers(1, 3))
def test_round_trip_property(tmp_path_factory, lengths, cams, state_dim, extra, per_file):
    root = tmp_path_factory.mktemp("rt")
    feats = features(cams=("top", "side")[:cams], state_dim=state_dim, extra=extra)
    write_dataset(root, lengths, feats, episodes_per_file=per_file)
    r = LeRobotDatasetReader(root)
    assert r.num_episodes == len(lengths) and r.num_frames == sum(lengths)
    start = 0
    for ep, n in enumerate(lengths):
        info = r.episode(ep)
        assert (info.length, info.dataset_from_index, info.dataset_to_index) == (n, start, start + n)
        t = r.episode_table(ep)
        assert t["frame_index"].tolist() == list(range(n)) and set(t["episode_index"]) == {ep}
        assert t["index"].tolist() == list(range(start, start + n))
        np.testing.assert_array_equal(t["timestamp"], (np.arange(n) / FPS).astype(np.float32))
        for i in range(n):
            want = frame(feats, ep, i, n)
            np.testing.assert_array_equal(t["observation.state"][i], want["observation.state"])
            np.testing.assert_array_equal(t["action"][i], want["action"])
            assert t["next.reward"][i] == np.float32(want["next.reward"]) and t["next.done"][i] == want["next.done"]
            if extra:
                assert t["observation.extra"][i] == want["observation.extra"]
        assert [r.subtasks[s] for s in t["subtask_index"]] == [f"sub {i // 3}" for i in range(n)]
        assert r.tasks[t["task_index"][0]] == f"task {ep % 2}"
        for c, key in enumerate(r.video_keys):
            frames = r.episode_frames(ep, key)
            assert frames.shape == (n, 16, 24, 3)
            want = np.array([pixel(ep, i, c) for i in range(n)])
            assert np.abs(frames.astype(int).mean(axis=(1, 2, 3)) - want).max() <= 3  # codec tolerance
        start += n
    n_files = len(list((root / "data").rglob("*.parquet")))
    assert n_files == -(-len(lengths) // per_file)


def test_random_access_decodes_only_asked_frames(tmp_path):
    write_dataset(tmp_path, [30, 25])
    r = LeRobotDatasetReader(tmp_path)
    idx = [24, 3, 3, 17]
    frames = r.episode_frames(1, CAM, idx)
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [pixel(1, i) for i in idx]).max() <= 3


def test_rolls_files_at_size_limit(tmp_path):
    feats = features(size=(32, 32))
    with LeRobotWriter(tmp_path, FPS, feats, data_files_size_in_mb=1e-4, video_files_size_in_mb=1e-4) as w:
        for ep in range(3):
            for i in range(4):
                w.add_frame(frame(feats, ep, i, 4), task="t")
            w.save_episode()
    assert len(list((tmp_path / "data").rglob("*.parquet"))) == 3
    assert len(list((tmp_path / "videos").rglob("*.mp4"))) == 3
    r = LeRobotDatasetReader(tmp_path)
    assert [row["data/file_index"] for row in r.episode_rows] == [0, 1, 2]
    assert abs(int(r.episode_frames(2, CAM, [3])[0, 0, 0, 0]) - pixel(2, 3)) <= 3


def test_next_file_rolls_chunks():
    assert fmt.next_file(0, 998, 1000) == (0, 999)
    assert fmt.next_file(0, 999, 1000) == (1, 0)


def test_resume_appends_and_continues_indices(tmp_path):
    write_dataset(tmp_path, [3, 4])
    feats = features()
    with LeRobotWriter(tmp_path, FPS, feats, resume=True) as w:
        for i in range(5):
            w.add_frame(frame(feats, 2, i, 5), task="task new")
        assert w.save_episode() == 2
    r = LeRobotDatasetReader(tmp_path)
    assert r.num_episodes == 3 and r.episode(2).dataset_from_index == 7
    assert r.tasks == ["task 0", "task 1", "task new"]
    assert r.episode_table(2)["index"].tolist() == list(range(7, 12))
    assert r.stats["action"]["count"] == [12]
    assert abs(int(r.episode_frames(2, CAM, [4])[0, 0, 0, 0]) - pixel(2, 4)) <= 3
    assert r.episode_rows[2]["data/file_index"] == 1  # resumed episodes go to a new file, like LeRobot


def test_new_writer_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(WorldmotError, match="not empty"):
        LeRobotWriter(tmp_path, FPS, features())


def test_interrupted_finalize_leaves_previous_episodes_and_resume_repairs(tmp_path, monkeypatch):
    """A crash after the data/video files of episode 2 were replaced but before info.json: readers see
    episodes 0-1 only; resume cuts the orphan rows and records episode 2 again."""
    feats = features()
    real = fmt.write_json

    def crash(path, obj):
        if path.name == "info.json":
            raise KeyboardInterrupt
        real(path, obj)

    w = LeRobotWriter(tmp_path, FPS, feats)
    for ep, n in enumerate([3, 4, 5]):
        for i in range(n):
            w.add_frame(frame(feats, ep, i, n), task="t")
        if ep == 2:
            monkeypatch.setattr(fmt, "write_json", crash)
            with pytest.raises(KeyboardInterrupt):
                w.save_episode()
        else:
            w.save_episode()
    monkeypatch.setattr(fmt, "write_json", real)
    assert pq.read_table(tmp_path / "data/chunk-000/file-000.parquet").num_rows == 12  # orphan rows on disk
    r = LeRobotDatasetReader(tmp_path)
    assert r.num_episodes == 2 and r.num_frames == 7
    assert r.episode_table(1)["index"].tolist() == [3, 4, 5, 6]
    with LeRobotWriter(tmp_path, FPS, feats, resume=True) as w2:
        for i in range(2):
            w2.add_frame(frame(feats, 2, i, 2), task="t")
        w2.save_episode()
    assert pq.read_table(tmp_path / "data/chunk-000/file-000.parquet")["episode_index"].to_pylist() == [0] * 3 + [1] * 4
    r = LeRobotDatasetReader(tmp_path)
    assert r.num_episodes == 3 and r.episode_table(2)["index"].tolist() == [7, 8]


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from datasets_helpers import features, frame
from worldmot.datasets.writer import LeRobotWriter
feats = features()
w = LeRobotWriter({root!r}, 10, feats, episodes_per_file=4)
ep = 0
while True:
    for i in range(7):
        w.add_frame(frame(feats, ep, i, 7), task="t")
    w.save_episode()
    print(ep, flush=True)
    ep += 1
"""


def test_killed_recording_keeps_every_completed_episode(tmp_path):
    root = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT.format(tests=str(Path(__file__).parent), root=str(root))],
                            stdout=subprocess.PIPE, text=True)
    done = -1
    try:
        while done < 5:
            done = int(proc.stdout.readline())
        time.sleep(0.013)  # land somewhere inside a later episode's finalization
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    r = LeRobotDatasetReader(root)
    assert r.num_episodes >= done + 1
    for ep in range(r.num_episodes):
        assert r.episode_table(ep)["frame_index"].tolist() == list(range(7))
        assert r.episode_frames(ep, CAM, [6]).shape == (1, 16, 24, 3)
    assert not [p for p in root.rglob("*.parquet") if p.name.startswith(".")]


def test_reads_dataset_written_by_lerobot():
    """tests/fixtures/lerobot_v30_tiny was written by LeRobot 0.4.4 (tools/checks/make_lerobot_fixture.py): two
    cameras of different sizes (AV1), observation.environment_state, episodes of 5, 9, 3 frames in one file."""
    r = LeRobotDatasetReader(FIXTURE)
    assert r.version == "v3.0" and r.fps == 10
    assert r.camera_keys == ["observation.images.top", "observation.images.wrist"]
    assert [e.length for e in r.episodes] == [5, 9, 3] and r.tasks == ["task number 0", "task number 1"]
    assert r.subtasks is None
    for ep, n in enumerate([5, 9, 3]):
        top = r.episode_frames(ep, "observation.images.top")
        assert top.shape == (n, 32, 48, 3)
        assert np.abs(top[:, 5, 5, 0].astype(int) - [20 * ep + 10 * i for i in range(n)]).max() <= 3
        wrist = r.episode_frames(ep, "observation.images.wrist", [n - 1])
        assert wrist.shape == (1, 24, 32, 3) and abs(int(wrist[0, 5, 5, 1]) - (20 * ep + 10 * (n - 1))) <= 3
        t = r.episode_table(ep)
        assert t["observation.environment_state"].shape == (n, 5) and t["index"][0] == r.episode(ep).dataset_from_index
    assert r.stats["observation.images.top"]["mean"].shape == (3, 1, 1)


def test_reads_v21(tmp_path):
    write_v21(tmp_path, [4, 6])
    r = LeRobotDatasetReader(tmp_path)
    assert r.version == "v2.1" and [e.length for e in r.episodes] == [4, 6] and r.tasks == ["the task"]
    assert r.episode_table(1)["observation.state"].tolist()[2] == [1.0, 2.0]
    assert np.abs(r.episode_frames(1, CAM, [0, 5])[:, 0, 0, 0].astype(int) - [pixel(1, 0), pixel(1, 5)]).max() <= 3
