"""Read local LeRobot datasets (v3.0 and v2.1) without the hub: metadata, per-episode tables, frames.

Only what the meta files reference is read: rows of episodes beyond ``total_episodes`` (left by an
interrupted writer) are ignored. Video containers open lazily and are not pickled, so a reader can be handed
to DataLoader workers. Every bad input becomes a one-line WorldmotError naming the file.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from worldmot.datasets import format as fmt
from worldmot.datasets.episode_stats import committed_stats
from worldmot.datasets.stats import aggregate
from worldmot.datasets.video import VideoFile
from worldmot.errors import WorldmotError

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
_MAX_OPEN_VIDEOS = 8  # containers kept open per reader (per DataLoader worker)


@dataclass(frozen=True)
class EpisodeInfo:
    index: int
    length: int
    tasks: tuple[str, ...]
    dataset_from_index: int
    dataset_to_index: int


class LeRobotDatasetReader:
    """A local LeRobot dataset folder.

    Attributes: ``version``, ``fps``, ``features`` (info.json's, shapes as tuples), ``robot_type``,
    ``episodes`` (list[EpisodeInfo]), ``tasks`` (list[str] by task_index), ``subtasks`` (list[str] by
    subtask_index, or None), ``stats`` (feature -> stat -> np.ndarray), ``camera_keys``.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = _load_info(self.root)
        self.version = self.info["codebase_version"]
        self.fps = int(self.info["fps"])
        self.features = self.info["features"]
        self.robot_type = self.info.get("robot_type")
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        self.image_keys = [k for k, v in self.features.items() if v["dtype"] == "image"]
        self.camera_keys = self.video_keys + self.image_keys
        if self.version == "v3.0":
            self._load_v3()
        else:
            self._load_v21()
        n = int(self.info["total_episodes"])
        if len(self.episode_rows) < n:
            raise WorldmotError(f"{self.root / 'meta/episodes'}: {len(self.episode_rows)} episode rows "
                                f"(expected total_episodes = {n} from info.json)")
        self.episode_rows = self.episode_rows[:n]  # rows beyond the commit point are not part of the dataset
        if self.version == "v3.0" and not _counts_frames(self.stats, sum(int(r["length"]) for r in self.episode_rows)):
            self.stats = committed_stats(self.root, n) or self.stats  # stats.json ahead of info.json (a kill)
        self.episodes = [EpisodeInfo(int(r["episode_index"]), int(r["length"]), tuple(r["tasks"]),
                                     int(r["dataset_from_index"]), int(r["dataset_to_index"]))
                         for r in self.episode_rows]
        self._tables: OrderedDict[Path, dict[str, np.ndarray]] = OrderedDict()
        self._videos: OrderedDict[Path, VideoFile] = OrderedDict()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ metadata
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def _load_v3(self) -> None:
        self.tasks = _index_strings(self.root / fmt.TASKS_PATH, "task_index")
        sub = self.root / fmt.SUBTASKS_PATH
        self.subtasks = _index_strings(sub, "subtask_index") if sub.exists() else None
        files = sorted((self.root / "meta/episodes").glob("*/*.parquet"))
        if not files and self.info["total_episodes"]:
            raise WorldmotError(f"{self.root / 'meta/episodes'}: no episodes parquet (expected chunk-*/file-*.parquet)")
        rows: list[dict] = []
        for f in files:
            t = _read_parquet(f)
            cols = [c for c in t.column_names if not c.startswith("stats/")]
            rows.extend(t.select(cols).to_pylist())
        # a row repeated in a later file (an episode re-recorded after a crash) replaces the earlier one
        by_index = {int(r["episode_index"]): r for r in rows}
        self.episode_rows = [by_index[i] for i in sorted(by_index)]
        stats_path = self.root / fmt.STATS_PATH
        self.stats = _to_numpy(_load_json(stats_path)) if stats_path.exists() else {}

    def _load_v21(self) -> None:
        tasks = _load_jsonl(self.root / "meta/tasks.jsonl")
        self.tasks = [t["task"] for t in sorted(tasks, key=lambda t: t["task_index"])]
        self.subtasks = None
        eps = sorted(_load_jsonl(self.root / "meta/episodes.jsonl"), key=lambda e: e["episode_index"])
        start, rows = 0, []
        cs = int(self.info.get("chunks_size", fmt.CHUNKS_SIZE))
        for e in eps:
            rows.append({"episode_index": e["episode_index"], "tasks": e["tasks"], "length": e["length"],
                         "dataset_from_index": start, "dataset_to_index": start + e["length"],
                         "episode_chunk": e["episode_index"] // cs})
            start += e["length"]
        self.episode_rows = rows
        if (self.root / fmt.STATS_PATH).exists():
            self.stats = _to_numpy(_load_json(self.root / fmt.STATS_PATH))
        elif (self.root / "meta/episodes_stats.jsonl").exists():
            per_ep = [_to_numpy(e["stats"]) for e in _load_jsonl(self.root / "meta/episodes_stats.jsonl")]
            self.stats = aggregate(per_ep) if per_ep else {}
        else:
            self.stats = {}

    def _row(self, ep: int) -> dict:
        if not isinstance(ep, (int, np.integer)) or not 0 <= ep < self.num_episodes:
            raise WorldmotError(f"{self.root}: episode index {ep} out of range (expected 0..{self.num_episodes - 1})")
        return self.episode_rows[int(ep)]

    def episode(self, ep: int) -> EpisodeInfo:
        """The episode's length, tasks and global row range; a one-line error when out of range."""
        self._row(ep)
        return self.episodes[int(ep)]

    def data_file(self, ep: int) -> Path:
        row = self._row(ep)
        if self.version == "v3.0":
            rel = self.info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        else:
            rel = self.info["data_path"].format(episode_chunk=row["episode_chunk"], episode_index=row["episode_index"])
        return self.root / rel

    def video_file(self, ep: int, key: str) -> tuple[Path, float]:
        """(path, from_timestamp) of camera ``key``'s MP4 holding episode ``ep``."""
        row = self._row(ep)
        if key not in self.video_keys:
            raise WorldmotError(f"{self.root / fmt.INFO_PATH}: no video feature {key!r} (expected one of {self.video_keys})")
        if self.version == "v3.0":
            rel = self.info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                 file_index=row[f"videos/{key}/file_index"])
            return self.root / rel, float(row[f"videos/{key}/from_timestamp"])
        rel = self.info["video_path"].format(episode_chunk=row["episode_chunk"], video_key=key,
                                             episode_index=row["episode_index"])
        return self.root / rel, 0.0

    # ------------------------------------------------------------------ tables
    def episode_table(self, ep: int, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """The episode's frame rows as numpy columns: (N,) for scalars, (N, d) for vectors, object arrays
        for strings; image features (PNG bytes inside parquet) are left out (use episode_frames)."""
        info = self.episode(ep)
        table = self._file_table(self.data_file(ep))
        rows = np.flatnonzero(table["episode_index"] == info.index)
        if len(rows) != info.length:
            raise WorldmotError(f"{self.data_file(ep)}: {len(rows)} rows for episode {info.index} "
                                f"(expected length {info.length} from meta/episodes)")
        keys = columns or [k for k in table if k in self.features or k in fmt.DEFAULT_FEATURES]
        missing = [k for k in keys if k not in table]
        if missing:
            raise WorldmotError(f"{self.data_file(ep)}: no column {missing[0]!r} (expected the features of info.json)")
        return {k: table[k][rows] for k in keys}

    def _file_table(self, path: Path) -> dict[str, np.ndarray]:
        if path in self._tables:
            self._tables.move_to_end(path)
            return self._tables[path]
        t = _read_parquet(path)
        missing = [k for k, spec in self.features.items() if not fmt.is_visual(spec) and k not in t.column_names]
        if missing:
            raise WorldmotError(f"{path}: no column {missing[0]!r} (expected every feature of info.json)")
        out = {}
        for name in t.column_names:
            spec = self.features.get(name) or fmt.DEFAULT_FEATURES.get(name)
            if spec is None or spec["dtype"] == "image":
                continue
            out[name] = _column_to_numpy(path, name, spec, t[name])
        self._tables[path] = out
        if len(self._tables) > 2:
            self._tables.popitem(last=False)
        return out

    def read_columns(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Columns over all episodes, in global frame order (what a window sampler keeps in memory)."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for ep in range(self.num_episodes):
            table = self.episode_table(ep, keys)
            for k in keys:
                parts[k].append(table[k])
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}

    # ------------------------------------------------------------------ frames
    def episode_frames(self, ep: int, camera: str, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 of camera ``camera`` at the episode's frame indices (all if None),
        decoding only those frames (seek to the keyframe before, decode forward)."""
        info = self.episode(ep)
        idx = np.arange(info.length) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= info.length):
            raise WorldmotError(f"{self.root}: frame index {int(idx.max() if idx.max() >= info.length else idx.min())} "
                                f"out of range for episode {ep} (expected 0..{info.length - 1})")
        if camera in self.image_keys:
            return self._image_frames(ep, camera, idx)
        path, from_ts = self.video_file(ep, camera)
        video = self._video(path)
        try:
            frames = video.frames_at(from_ts + idx / self.fps, self.fps)
        except KeyError as e:
            raise WorldmotError(f"{path}: no frame for episode {ep} at t={from_ts:.4f}+index/fps "
                                f"(expected {info.length} frames from {from_ts:.4f}s)") from e
        except (av.error.FFmpegError, ValueError, IndexError) as e:
            self._drop_video(path)
            raise WorldmotError(f"{path}: not a readable MP4 ({type(e).__name__}: {e})") from e
        shape = tuple(self.features[camera]["shape"])
        if frames.shape[1:] != _hwc(shape, self.features[camera].get("names")):
            raise WorldmotError(f"{path}: frames of shape {list(frames.shape[1:])} "
                                f"(expected {list(shape)} from info.json features[{camera!r}])")
        return frames

    def _video(self, path: Path) -> VideoFile:
        if self._pid != os.getpid():
            # a forked DataLoader worker inherits the parent's open decoders, whose threads did not come
            # along: using them deadlocks. Forget them (never close them here) and open fresh ones.
            self._videos, self._pid = OrderedDict(), os.getpid()
        if path in self._videos:
            self._videos.move_to_end(path)
            return self._videos[path]
        if not path.exists():
            raise WorldmotError(f"{path}: missing (referenced by meta/episodes)")
        v = VideoFile(path)
        self._videos[path] = v
        if len(self._videos) > _MAX_OPEN_VIDEOS:
            self._videos.popitem(last=False)[1].close()
        return v

    def _drop_video(self, path: Path) -> None:
        v = self._videos.pop(path, None)
        if v is not None:
            v.close()

    def _image_frames(self, ep: int, camera: str, idx: np.ndarray) -> np.ndarray:
        path = self.data_file(ep)
        t = _read_parquet(path, columns=[camera, "episode_index"])
        rows = np.flatnonzero(t["episode_index"].to_numpy() == self.episodes[int(ep)].index)[idx]
        col = t[camera].to_pylist()
        out = []
        for r in rows:
            data = col[r]["bytes"] if isinstance(col[r], dict) else col[r]
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise WorldmotError(f"{path}: row {r} of {camera!r} is not a decodable image")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def close(self) -> None:
        for v in self._videos.values():
            v.close()
        self._videos.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_videos"] = OrderedDict()  # open containers stay in the process that opened them
        state["_tables"] = OrderedDict()
        return state


# ---------------------------------------------------------------------- helpers
def _hwc(shape: tuple, names: list[str] | None) -> tuple[int, int, int]:
    """(H, W, C) of a camera feature, whichever order info.json lists it in."""
    if names and list(names)[:1] == ["channels"]:
        return (shape[1], shape[2], shape[0])
    return tuple(shape)  # type: ignore[return-value]


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise WorldmotError(f"{path}: missing (expected a LeRobot dataset folder)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorldmotError(f"{path}: not valid JSON ({e})") from e


def _load_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise WorldmotError(f"{path}: missing (expected a LeRobot v2.1 dataset)")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise WorldmotError(f"{path}: not valid JSON lines ({e})") from e


def _load_info(root: Path) -> dict:
    path = root / fmt.INFO_PATH
    info = _load_json(path)
    if not isinstance(info, dict):
        raise WorldmotError(f"{path}: not a JSON object (expected LeRobot info.json)")
    for key in ("codebase_version", "fps", "features", "total_episodes", "data_path"):
        if key not in info:
            raise WorldmotError(f"{path}: missing key {key!r}")
    if info["codebase_version"] not in SUPPORTED_VERSIONS:
        raise WorldmotError(f"{path}: codebase_version {info['codebase_version']!r} (expected one of {SUPPORTED_VERSIONS})")
    for name, spec in info["features"].items():
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise WorldmotError(f"{path}: features[{name!r}] lacks dtype/shape")
        spec["shape"] = tuple(spec["shape"])
    return info


def _read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    if not path.exists():
        raise WorldmotError(f"{path}: missing (referenced by the dataset's meta files)")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise WorldmotError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from e


def _index_strings(path: Path, index_col: str) -> list[str]:
    """Strings of a LeRobot index parquet (tasks/subtasks: the string is the pandas index), by index_col."""
    _read_parquet(path)  # one-line error on a missing/corrupt file
    df = pd.read_parquet(path)
    if index_col not in df.columns:
        raise WorldmotError(f"{path}: no column {index_col!r}")
    df = df.sort_values(index_col)
    if list(df[index_col]) != list(range(len(df))):
        raise WorldmotError(f"{path}: {index_col} is not 0..{len(df) - 1}")
    return [str(s) for s in df.index]


def _column_to_numpy(path: Path, name: str, spec: dict, col: pa.ChunkedArray) -> np.ndarray:
    shape = tuple(spec["shape"])
    col = col.combine_chunks()
    if spec["dtype"] == "string":
        return np.asarray(col.to_pylist(), dtype=object)
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        d = int(np.prod(shape))
        if len(lengths) and (lengths.min() != d or lengths.max() != d):
            bad = int(lengths[lengths != d][0])
            raise WorldmotError(f"{path}: column {name!r} has rows of length {bad} "
                                f"(expected shape {list(shape)} from info.json)")
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape((len(col),) + shape)
    if shape not in ((1,), ()):
        raise WorldmotError(f"{path}: column {name!r} holds scalars (expected shape {list(shape)} from info.json)")
    return col.to_numpy(zero_copy_only=False)


def _counts_frames(stats: dict, frames: int) -> bool:
    """Whether the frame-index stats count ``frames`` (True where stats.json has none to tell)."""
    count = stats.get("index", {}).get("count")
    return count is None or int(np.asarray(count).reshape(-1)[0]) == frames


def _to_numpy(stats: dict) -> dict:
    return {k: _to_numpy(v) if isinstance(v, dict) else np.asarray(v) for k, v in stats.items()}
