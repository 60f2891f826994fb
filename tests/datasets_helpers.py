"""Synthetic episodes for the dataset tests: frames whose colour encodes (episode, frame)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from worldmot.datasets.video import encode_segment
from worldmot.datasets.writer import LeRobotWriter

FPS = 10


def features(cams=("top",), size=(16, 24), state_dim=3, action_dim=2, extra=False, keypoints=0) -> dict:
    feats = {f"observation.images.{c}": {"dtype": "video", "shape": [size[0], size[1], 3], "names": None}
             for c in cams}
    feats["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": None}
    feats["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
    feats["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    if extra:
        feats["observation.extra"] = {"dtype": "int64", "shape": [1], "names": None}
    if keypoints:
        feats["observation.keypoints"] = {"dtype": "float32", "shape": [2 * keypoints], "names": None}
    return feats


def pixel(ep: int, i: int, cam: int = 0) -> int:
    """The grey level of frame i of episode ep (distinct and far apart within an episode)."""
    return (37 * ep + 23 * i + 80 * cam) % 200 + 20


def frame(feats: dict, ep: int, i: int, n: int) -> dict:
    out = {}
    for c, key in enumerate(k for k, v in feats.items() if v["dtype"] == "video"):
        out[key] = np.full(tuple(feats[key]["shape"]), pixel(ep, i, c), np.uint8)
    out["observation.state"] = np.arange(feats["observation.state"]["shape"][0], dtype=np.float32) + 100 * ep + i
    out["action"] = np.full(feats["action"]["shape"][0], ep + i / 100, np.float32)
    out["next.reward"] = (i + 1) / n
    out["next.done"] = i == n - 1
    out["next.success"] = i == n - 1
    if "observation.extra" in feats:
        out["observation.extra"] = ep * 1000 + i
    if "observation.keypoints" in feats:  # points that move right by 0.05 of the image per frame
        k = feats["observation.keypoints"]["shape"][0] // 2
        out["observation.keypoints"] = np.stack([np.full(k, (0.1 + 0.05 * i) % 1.0),
                                                 0.2 + 0.6 * np.arange(k) / max(k, 1)], -1).reshape(-1).astype(np.float32)
    return out


def write_dataset(root: Path, lengths: list[int], feats: dict | None = None, **kwargs) -> dict:
    feats = feats or features()
    with LeRobotWriter(root, FPS, feats, robot_type="test", **kwargs) as w:
        for ep, n in enumerate(lengths):
            for i in range(n):
                w.add_frame(frame(feats, ep, i, n), task=f"task {ep % 2}", subtask=f"sub {i // 3}")
            w.save_episode()
    return feats


def write_v21(root: Path, lengths: list[int], size=(16, 24)) -> None:
    """A LeRobot v2.1 folder (one parquet and one mp4 per episode, jsonl meta), as LeRobot 0.2/0.3 wrote."""
    key = "observation.images.top"
    info = {"codebase_version": "v2.1", "robot_type": "test", "total_episodes": len(lengths),
            "total_frames": sum(lengths), "total_tasks": 1, "chunks_size": 1000, "fps": FPS,
            "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {key: {"dtype": "video", "shape": [size[0], size[1], 3], "names": ["height", "width", "channels"]},
                         "observation.state": {"dtype": "float32", "shape": [2], "names": None},
                         "action": {"dtype": "float32", "shape": [2], "names": None},
                         "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                         "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                         "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                         "index": {"dtype": "int64", "shape": [1], "names": None},
                         "task_index": {"dtype": "int64", "shape": [1], "names": None}}}
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "the task"}) + "\n")
    eps, start = [], 0
    for ep, n in enumerate(lengths):
        eps.append(json.dumps({"episode_index": ep, "tasks": ["the task"], "length": n}))
        rows = {"observation.state": [[ep, i] for i in range(n)], "action": [[i, -i] for i in range(n)],
                "timestamp": np.arange(n, dtype=np.float32) / FPS, "frame_index": np.arange(n),
                "episode_index": np.full(n, ep), "index": np.arange(start, start + n), "task_index": np.zeros(n, int)}
        df = pd.DataFrame({k: list(v) for k, v in rows.items()})
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
        vpath = root / f"videos/chunk-000/{key}/episode_{ep:06d}.mp4"
        vpath.parent.mkdir(parents=True, exist_ok=True)
        frames = [np.full((size[0], size[1], 3), pixel(ep, i), np.uint8) for i in range(n)]
        vpath.write_bytes(encode_segment(frames, FPS))
        start += n
    (root / "meta/episodes.jsonl").write_text("\n".join(eps) + "\n")
