"""Crash consistency of the dataset writer by fault injection: a kill at every crash point of every episode
save (parquet, mp4, tasks, subtasks, episodes metadata, stats, info), then resume to the full count."""
from __future__ import annotations

import json

import pytest

from crash_helpers import assert_same_dataset, count_points, run_killed_at
from datasets_helpers import FPS, features, frame
from worldmot.datasets import format as fmt
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.datasets.writer import LeRobotWriter
from worldmot.errors import WorldmotError

LENGTHS = [3, 4, 2]
FEATS = features()


def _record(root, resume=False):
    """Write the episodes of LENGTHS the dataset does not hold yet (the recorder's contract)."""
    with LeRobotWriter(root, FPS, FEATS, robot_type="test", resume=resume, episodes_per_file=2) as w:
        for ep in range(w.info["total_episodes"], len(LENGTHS)):
            n = LENGTHS[ep]
            for i in range(n):
                w.add_frame(frame(FEATS, ep, i, n), task=f"task {ep % 2}", subtask=f"sub {i // 3}")
            w.save_episode()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref") / "ds"
    _record(root)
    return root


def test_every_writer_crash_point_recovers(tmp_path, monkeypatch, reference):
    points = count_points(monkeypatch, lambda: _record(tmp_path / "count"))
    kinds = {p.split(":")[0].rsplit(".", 1)[-1] for p in points}
    assert {"parquet", "mp4", "json"} <= kinds and len(points) >= 3 * 10
    ref = LeRobotDatasetReader(reference)
    for k in range(1, len(points) + 1):
        root = tmp_path / f"k{k}"
        assert run_killed_at(monkeypatch, k, lambda: _record(root)) == points[k - 1]
        if (root / fmt.INFO_PATH).exists():
            LeRobotDatasetReader(root)  # the killed folder loads as the episodes it committed
        _record(root, resume=True)
        assert not [p for p in root.rglob(".*")], f"temporaries left after a kill at {points[k - 1]}"
        assert_same_dataset(LeRobotDatasetReader(root), ref)
    print(f"{len(points)} of {len(points)} writer crash points recovered")


def test_stats_written_ahead_of_info_are_not_trusted(tmp_path, reference):
    """Issue 30.1: stats.json counting an episode info.json does not (killed between the two writes)."""
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(reference, root)
    info = json.loads((root / fmt.INFO_PATH).read_text())
    info["total_episodes"], info["total_frames"] = 2, sum(LENGTHS[:2])
    (root / fmt.INFO_PATH).write_text(json.dumps(info))
    assert int(LeRobotDatasetReader(root).stats["index"]["count"][0]) == sum(LENGTHS[:2])
    _record(root, resume=True)
    assert_same_dataset(LeRobotDatasetReader(root), LeRobotDatasetReader(reference))


def test_resume_of_first_episode_leftovers_starts_over(tmp_path, reference):
    """Issue 30.4: killed during the first episode's save (no info.json): --resume recovers."""
    root = tmp_path / "ds"
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000/.file-000.parquet.tmp").write_bytes(b"half")
    (root / "meta").mkdir()
    (root / "meta/tasks.parquet").write_bytes(b"x")
    _record(root, resume=True)
    assert_same_dataset(LeRobotDatasetReader(root), LeRobotDatasetReader(reference))


def test_resume_without_info_keeps_foreign_files(tmp_path):
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(WorldmotError, match="notes.txt"):
        _record(root, resume=True)
    assert (root / "notes.txt").read_text() == "mine" and (root / "meta").is_dir()
