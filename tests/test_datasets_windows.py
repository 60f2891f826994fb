"""Training windows, LeRobot-style delta_timestamps, episode split, and one-line errors on bad input."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets_helpers import FPS, features, pixel, write_dataset
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.datasets.windows import (FrameDataset, WindowDataset, collate_windows, delta_timestamps_to_indices,
                                       split_episodes)
from worldmot.errors import WorldmotError

CAM = "observation.images.top"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("win")
    write_dataset(root, [10, 7])
    return root


def test_window_contents(root):
    ds = WindowDataset(root, n_steps=3, chunk=4)
    assert len(ds) == 17
    s = ds[12]  # episode 1, t0 = 2: frames at 2, 6, 10 (10 is past the end, clamped to 6)
    assert (s["episode_index"], s["frame_index"]) == (1, 2)
    assert s["frames"].dtype == torch.uint8 and s["frames"].shape == (3, 16, 24, 3)
    assert s["frame_is_pad"].tolist() == [False, False, True]
    assert np.abs(s["frames"][:, 0, 0, 0].numpy().astype(int) - [pixel(1, 2), pixel(1, 6), pixel(1, 6)]).max() <= 3
    assert s["states"][:, 0].tolist() == [102, 106, 106]
    assert s["actions"].shape == (3, 4, 2)
    assert s["action_is_pad"].tolist() == [[False] * 4, [False, True, True, True], [True] * 4]
    assert s["actions"][0, :, 0].tolist() == pytest.approx([1.02, 1.03, 1.04, 1.05])
    assert s["instruction"] == "task 1"
    assert s["subtasks"] == ["sub 0", "sub 2", "sub 2"]
    # progress of frame t = reward of step t-1 = t/7, over the dataset reward range [1/10, 1]
    lo = 1 / 10
    assert s["progress"].tolist() == pytest.approx([(2 / 7 - lo) / (1 - lo), (6 / 7 - lo) / (1 - lo)] * 1 + [(6 / 7 - lo) / (1 - lo)], abs=1e-6)
    assert s["success"].tolist() == [False, False, False]
    first = ds[0]
    assert first["progress"][0] == 0 and not first["success"][0]  # no transition led into frame 0


def test_window_success_at_the_end(root):
    ds = WindowDataset(root, n_steps=2, chunk=9)
    s = ds[1]  # episode 0, t0 = 1: frames 1 and 10 -> clamped to 9 (pad); step 8 -> 9 did not succeed
    assert s["frame_is_pad"].tolist() == [False, True] and s["success"].tolist() == [False, False]
    s = ds[0]  # frames 0 and 9: success of step 8 is False, reward 9/10
    assert s["progress"][1] == pytest.approx((0.9 - 0.1) / 0.9)


def test_dataloader_with_workers_decodes_lazily(root):
    ds = WindowDataset(root, n_steps=3, chunk=4, episodes=[1])
    pickle.dumps(ds)
    ds[0]  # opens a container in this process; it must not travel to the workers
    assert pickle.loads(pickle.dumps(ds)).reader._videos == {}
    batches = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_windows))
    assert sum(len(b["instruction"]) for b in batches) == 7
    b = batches[0]
    assert b["frames"].shape == (4, 3, 16, 24, 3) and b["actions"].shape == (4, 3, 4, 2)
    assert len(b["subtasks"]) == 4 and len(b["subtasks"][0]) == 3 and b["episode_index"].tolist() == [1] * 4


def test_frame_dataset_delta_timestamps(root):
    ds = FrameDataset(root, delta_timestamps={CAM: [-0.1, 0.0], "action": [0.0, 0.1, 0.2]})
    item = ds[0]
    assert item[CAM].shape == (2, 3, 16, 24) and item[CAM].dtype == torch.float32 and item[CAM].max() <= 1
    assert item[f"{CAM}_is_pad"].tolist() == [True, False]
    assert item["action"].shape == (3, 2) and item["action_is_pad"].tolist() == [False] * 3
    assert item["task"] == "task 0" and item["subtask"] == "sub 0"
    last = ds[9]
    assert last["action_is_pad"].tolist() == [False, True, True]


def test_delta_timestamps_must_be_multiples_of_frame_period():
    assert delta_timestamps_to_indices({"a": [-0.2, 0, 0.1 + 5e-5]}, 10) == {"a": [-2, 0, 1]}
    with pytest.raises(WorldmotError, match="multiple of 1/fps"):
        delta_timestamps_to_indices({"a": [0.05]}, 10)


def test_split_episodes():
    train, val = split_episodes(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10)) and not set(train) & set(val)
    assert split_episodes(10, 0.2, seed=3) == (train, val)
    assert split_episodes(10, 0.2, seed=4) != (train, val)
    assert split_episodes(3, 0.01)[1] and split_episodes(5, 0.0) == (list(range(5)), [])


# ---------------------------------------------------------------- bad input
@pytest.fixture
def copy(root, tmp_path):
    import shutil

    dst = tmp_path / "ds"
    shutil.copytree(root, dst)
    return dst


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_missing_info(tmp_path):
    with pytest.raises(WorldmotError) as e:
        LeRobotDatasetReader(tmp_path)
    assert "meta/info.json: missing" in _one_line(e)


def test_corrupt_info(copy):
    (copy / "meta/info.json").write_text("{not json")
    with pytest.raises(WorldmotError) as e:
        LeRobotDatasetReader(copy)
    assert "info.json: not valid JSON" in _one_line(e)
    (copy / "meta/info.json").write_text(json.dumps({"codebase_version": "v3.0"}))
    with pytest.raises(WorldmotError, match="missing key 'fps'"):
        LeRobotDatasetReader(copy)


def test_corrupt_parquet(copy):
    path = copy / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[:100])
    r = LeRobotDatasetReader(copy)
    with pytest.raises(WorldmotError) as e:
        r.episode_table(0)
    assert "file-000.parquet: not a readable parquet file" in _one_line(e)


def test_corrupt_mp4(copy):
    path = copy / f"videos/{CAM}/chunk-000/file-000.mp4"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 3]))
    r = LeRobotDatasetReader(copy)
    with pytest.raises(WorldmotError) as e:
        r.episode_frames(1, CAM, [6])
    assert "file-000.mp4" in _one_line(e)


def test_shape_disagrees_with_info(copy):
    info = json.loads((copy / "meta/info.json").read_text())
    info["features"]["observation.state"]["shape"] = [5]
    (copy / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(WorldmotError) as e:
        LeRobotDatasetReader(copy).episode_table(0)
    assert "'observation.state' has rows of length 3 (expected shape [5]" in _one_line(e)
    info["features"]["observation.state"]["shape"] = [3]
    info["features"][CAM]["shape"] = [32, 24, 3]
    (copy / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(WorldmotError, match=r"frames of shape \[16, 24, 3\] \(expected \[32, 24, 3\]"):
        LeRobotDatasetReader(copy).episode_frames(0, CAM, [0])


def test_episode_out_of_range(root):
    r = LeRobotDatasetReader(root)
    with pytest.raises(WorldmotError) as e:
        r.episode_frames(2, CAM, [0])
    assert "episode index 2 out of range (expected 0..1)" in _one_line(e)
    with pytest.raises(WorldmotError, match="frame index 10 out of range"):
        r.episode_frames(0, CAM, [10])
    with pytest.raises(WorldmotError, match="out of range"):
        WindowDataset(root, episodes=[5])


def test_missing_video_file(copy):
    (copy / f"videos/{CAM}/chunk-000/file-000.mp4").unlink()
    with pytest.raises(WorldmotError, match="file-000.mp4: missing"):
        LeRobotDatasetReader(copy).episode_frames(0, CAM, [0])


def test_writer_rejects_bad_frames(tmp_path):
    from worldmot.datasets.writer import LeRobotWriter

    w = LeRobotWriter(tmp_path, FPS, features())
    good = {CAM: np.zeros((16, 24, 3), np.uint8), "observation.state": np.zeros(3), "action": np.zeros(2),
            "next.reward": 0.0, "next.done": False, "next.success": False}
    with pytest.raises(WorldmotError, match=r"frame\['observation.state'\]: shape \[4\] \(expected \[3\]\)"):
        w.add_frame({**good, "observation.state": np.zeros(4)}, task="t")
    with pytest.raises(WorldmotError, match="expected uint8"):
        w.add_frame({**good, CAM: np.zeros((16, 24, 3), np.float32)}, task="t")
    with pytest.raises(WorldmotError, match="missing feature 'action'"):
        w.add_frame({k: v for k, v in good.items() if k != "action"}, task="t")
    with pytest.raises(WorldmotError, match="even H, even W"):
        LeRobotWriter(tmp_path / "odd", FPS, features(size=(15, 24)))


def test_normalized_actions_use_the_quantiles_of_stats_json(root):
    raw, norm = WindowDataset(root, n_steps=3, chunk=4), WindowDataset(root, n_steps=3, chunk=4, normalize_actions=True)
    st = LeRobotDatasetReader(root).stats["action"]
    q01, q99 = np.asarray(st["q01"], np.float32), np.asarray(st["q99"], np.float32)
    a, b = raw[5]["actions"].numpy(), norm[5]["actions"].numpy()
    np.testing.assert_allclose(b, 2 * (a - q01) / (q99 - q01) - 1, rtol=1e-5, atol=1e-5)
    assert norm[5]["actions"].dtype == torch.float32
