"""Write episodes as a LeRobot v3.0 dataset, finalizing every episode atomically.

Crash safety: the data parquet and the MP4 of the file an episode lands in are rewritten whole (earlier
episodes' rows and packets plus the new ones) to temporary names and renamed into place; then the meta files
follow, meta/info.json last. info.json is the commit point: everything it counts is on disk, complete, and
readers (this package's and LeRobot's) only index what the meta files reference. A process killed at any
point leaves the dataset as of its last finished episode; the rows of an unfinished one may sit at the end
of the last data file, where no index reaches them, and ``resume`` cuts them off. ``resume`` also deletes the
temporaries a kill left, rebuilds meta/stats.json from the committed episodes' own stats (stats.json is written
just before info.json, so after a kill it may count one episode more), and starts over a folder killed during
its first episode (no info.json yet, only the writer's own files).

Because an episode rewrites its file, files roll to the next index not only at LeRobot's size limits but also
after ``episodes_per_file`` episodes, which bounds the cost of finalizing one episode.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from worldmot.datasets import format as fmt
from worldmot.datasets.episode_stats import committed_stats
from worldmot.datasets.stats import aggregate, image_stats, numeric_stats, sample_indices
from worldmot.datasets.video import (CODEC_NAMES, DEFAULT_CODEC, available_codec, concat_segments, encode_segment,
                                     segment_packets)
from worldmot.errors import WorldmotError
from worldmot.io import atomic_write, is_temporary, remove_temporaries

# what the writer puts in a dataset folder: a folder of only these (and temporaries) and no info.json is a
# recording killed during its first episode
WRITER_ENTRIES = ("data", "videos", "meta")


@dataclass
class _Episode:
    """Frames of the episode being recorded in one slot (one per vector-env worker)."""

    tasks: list[str] = field(default_factory=list)
    subtasks: list[str] = field(default_factory=list)
    columns: dict[str, list] = field(default_factory=dict)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)


@dataclass
class _OpenFile:
    """The data/video file group episodes are being appended to."""

    chunk_index: int
    file_index: int
    tables: list[pa.Table] = field(default_factory=list)
    segments: dict[str, list[bytes]] = field(default_factory=dict)
    packets: dict[str, list[list]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)


class LeRobotWriter:
    """Append episodes to a LeRobot v3.0 dataset folder.

    ``features`` maps feature keys to ``{"dtype", "shape", "names"}``; camera features have dtype "video"
    and shape (H, W, 3). The default columns (timestamp, frame_index, episode_index, index, task_index) and,
    when ``subtasks`` is true, ``subtask_index`` (into meta/subtasks.parquet) are added here.

    Usage::

        with LeRobotWriter(root, fps=30, features=feats) as w:
            for t in range(T):
                w.add_frame({"observation.state": s, "action": a, ...}, task="reach the red ball", subtask="...")
            w.save_episode()
    """

    def __init__(self, root: str | Path, fps: int, features: dict[str, dict], robot_type: str | None = None,
                 codec: str = DEFAULT_CODEC, subtasks: bool = True,
                 data_files_size_in_mb: int = fmt.DATA_FILES_SIZE_IN_MB,
                 video_files_size_in_mb: int = fmt.VIDEO_FILES_SIZE_IN_MB,
                 episodes_per_file: int = 100, chunks_size: int = fmt.CHUNKS_SIZE, resume: bool = False):
        self.root = Path(root)
        self.codec = available_codec(codec)
        self.episodes_per_file = episodes_per_file
        self._slots: dict[int, _Episode] = {}
        self._episode_stats: list[dict] = []  # per finished episode, plus one entry for resumed stats
        self._meta_table: pa.Table | None = None  # rows of the current meta/episodes file
        if resume:
            remove_temporaries(self.root)
            if not (self.root / fmt.INFO_PATH).exists():
                self._clear_unstarted()
        if resume and (self.root / fmt.INFO_PATH).exists():
            self._open_existing()
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise WorldmotError(f"{self.root}: exists and is not empty (expected a new folder, or resume)")
            self.info = self._new_info(fps, features, robot_type, subtasks, data_files_size_in_mb,
                                       video_files_size_in_mb, chunks_size)
            self.root.mkdir(parents=True, exist_ok=True)  # an unwritable folder fails before any episode runs
            self.tasks: dict[str, int] = {}
            self.subtasks: dict[str, int] = {}
            self._file = _OpenFile(0, 0)
            self._meta_file = (0, 0)
        self.fps = int(self.info["fps"])
        self.features = self.info["features"]
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        self._schema = pa.schema([(k, fmt.arrow_type(k, v)) for k, v in self.features.items()
                                  if not fmt.is_visual(v)])
        self.has_subtasks = "subtask_index" in self.features

    # ---------------------------------------------------------------- set-up
    def _new_info(self, fps: int, features: dict[str, dict], robot_type: str | None, subtasks: bool,
                  data_mb: int, video_mb: int, chunks_size: int) -> dict:
        feats: dict[str, dict] = {}
        for key, spec in features.items():
            spec = {"dtype": spec["dtype"], "shape": list(spec["shape"]), "names": spec.get("names")}
            if key in fmt.DEFAULT_FEATURES or key == "subtask_index":
                raise WorldmotError(f"feature {key!r}: reserved name (it is added by the writer)")
            if spec["dtype"] == "video":
                h, w, c = spec["shape"]
                if c != 3 or h % 2 or w % 2:
                    raise WorldmotError(f"feature {key!r}: camera shape {spec['shape']} (expected [even H, even W, 3])")
                spec["names"] = spec["names"] or ["height", "width", "channels"]
                spec["info"] = {"video.height": h, "video.width": w, "video.codec": CODEC_NAMES[self.codec],
                                "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                                "video.channels": 3, "has_audio": False}
            else:
                fmt.arrow_type(key, spec)  # validates dtype and shape
            feats[key] = spec
        if subtasks:
            feats.update(copy.deepcopy(fmt.SUBTASK_FEATURE))
        feats.update(copy.deepcopy(fmt.DEFAULT_FEATURES))
        has_video = any(v["dtype"] == "video" for v in feats.values())
        return {
            "codebase_version": fmt.CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": 0,
            "total_frames": 0, "total_tasks": 0, "chunks_size": chunks_size, "data_files_size_in_mb": data_mb,
            "video_files_size_in_mb": video_mb, "fps": int(fps), "splits": {}, "data_path": fmt.DATA_PATH,
            "video_path": fmt.VIDEO_PATH if has_video else None, "features": feats,
        }

    def _clear_unstarted(self) -> None:
        """Resume of a folder without info.json: delete the files of a first episode that never committed,
        when that is all the folder holds; anything else in it is not the writer's and stays."""
        if not self.root.is_dir():
            return
        foreign = [p.name for p in self.root.iterdir() if p.name not in WRITER_ENTRIES and not is_temporary(p)]
        if foreign:
            raise WorldmotError(f"{self.root}: no {fmt.INFO_PATH} and holds {foreign[0]!r} (expected a dataset "
                                "folder written by worldmot, or a new folder)")
        for name in WRITER_ENTRIES:
            shutil.rmtree(self.root / name, ignore_errors=True)

    def _open_existing(self) -> None:
        """Resume: load the meta, cut unfinished leftovers, and start new files after the last ones."""
        from worldmot.datasets.reader import LeRobotDatasetReader  # the reader validates what it loads

        reader = LeRobotDatasetReader(self.root)
        if reader.version != fmt.CODEBASE_VERSION:
            raise WorldmotError(f"{self.root / fmt.INFO_PATH}: codebase_version {reader.version} (expected v3.0 to append)")
        self.info = json.loads((self.root / fmt.INFO_PATH).read_text())
        self.tasks = {t: i for i, t in enumerate(reader.tasks)}
        self.subtasks = {t: i for i, t in enumerate(reader.subtasks or [])}
        committed = committed_stats(self.root, reader.num_episodes)
        stats = committed if committed is not None else reader.stats
        if stats:
            self._episode_stats.append(stats)
        last = reader.episode_rows[-1] if reader.episode_rows else None
        if last is None:
            self._file, self._meta_file = _OpenFile(0, 0), (0, 0)
            return
        self._truncate_data_file(reader)
        self._truncate_meta_files(reader.num_episodes)
        cs = self.info["chunks_size"]
        self._file = _OpenFile(*fmt.next_file(int(last["data/chunk_index"]), int(last["data/file_index"]), cs))
        for key in [k for k, v in self.info["features"].items() if v["dtype"] == "video"]:
            c, f = fmt.next_file(int(last[f"videos/{key}/chunk_index"]), int(last[f"videos/{key}/file_index"]), cs)
            if (c, f) > (self._file.chunk_index, self._file.file_index):
                self._file = _OpenFile(c, f)
        self._meta_file = fmt.next_file(int(last["meta/episodes/chunk_index"]),
                                        int(last["meta/episodes/file_index"]), cs)

    def _truncate_data_file(self, reader: Any) -> None:
        """Drop rows of episodes the meta never committed (a crash after the data file was replaced)."""
        last = reader.episode_rows[-1]
        path = self.root / self.info["data_path"].format(chunk_index=int(last["data/chunk_index"]),
                                                         file_index=int(last["data/file_index"]))
        table = pq.read_table(path)
        keep = pa.compute.less(table["episode_index"], reader.num_episodes)
        if not pa.compute.all(keep).as_py():
            atomic_write(path, lambda p: pq.write_table(table.filter(keep), p))

    def _truncate_meta_files(self, committed: int) -> None:
        """Drop episode rows written before a crash hit info.json (they would shadow the re-recorded ones)."""
        for path in sorted((self.root / "meta/episodes").glob("*/*.parquet")):
            table = pq.read_table(path)
            keep = pa.compute.less(table["episode_index"], committed)
            if pa.compute.all(keep).as_py():
                continue
            if pa.compute.any(keep).as_py():
                atomic_write(path, lambda p, t=table.filter(keep): pq.write_table(t, p))
            else:
                path.unlink()

    # ---------------------------------------------------------------- recording
    def add_frame(self, frame: dict[str, Any], task: str, subtask: str = "", slot: int = 0) -> None:
        """Buffer one frame of the episode recorded in ``slot``: every feature key of the dataset
        (cameras as (H, W, 3) uint8), not the default columns."""
        ep = self._slots.setdefault(slot, _Episode())
        missing = [k for k in self.features if k not in frame and k not in fmt.DEFAULT_FEATURES
                   and k != "subtask_index"]
        if missing:
            raise WorldmotError(f"frame: missing feature {missing[0]!r} (expected keys {sorted(self.user_keys)})")
        for key in self.user_keys:
            spec, value = self.features[key], frame[key]
            if spec["dtype"] == "video":
                value = np.asarray(value)
                if value.shape != tuple(spec["shape"]) or value.dtype != np.uint8:
                    raise WorldmotError(f"frame[{key!r}]: {value.dtype} {list(value.shape)} "
                                        f"(expected uint8 {spec['shape']})")
                ep.frames.setdefault(key, []).append(value)
            else:
                value = _check_value(key, spec, value)
                ep.columns.setdefault(key, []).append(value)
        ep.tasks.append(task)
        ep.subtasks.append(subtask or "")

    @property
    def user_keys(self) -> list[str]:
        return [k for k in self.features if k not in fmt.DEFAULT_FEATURES and k != "subtask_index"]

    def clear_episode(self, slot: int = 0) -> None:
        self._slots.pop(slot, None)

    def save_episode(self, slot: int = 0) -> int:
        """Finalize the episode buffered in ``slot``; returns its episode_index."""
        ep = self._slots.pop(slot, None)
        if ep is None or len(ep) == 0:
            raise WorldmotError(f"save_episode: slot {slot} has no frames")
        index = self.info["total_episodes"]
        n = len(ep)
        from_index = self.info["total_frames"]
        new_tasks = [t for t in dict.fromkeys(ep.tasks) if t not in self.tasks]
        for t in new_tasks:
            self.tasks[t] = len(self.tasks)
        new_subtasks = [s for s in dict.fromkeys(ep.subtasks) if s not in self.subtasks] if self.has_subtasks else []
        for s in new_subtasks:
            self.subtasks[s] = len(self.subtasks)

        columns = self._episode_columns(ep, index, from_index)
        table = pa.table({k: _to_arrow(columns[k], self._schema.field(k).type) for k in self._schema.names},
                         schema=self._schema)
        segments = {k: encode_segment(ep.frames[k], self.fps, self.codec) for k in self.video_keys}
        self._roll_if_needed(n, sum(len(s) for s in segments.values()), table.nbytes)
        f = self._file
        from_ts = sum(f.lengths) / self.fps
        f.tables.append(table)
        f.lengths.append(n)
        for k, seg in segments.items():
            f.segments.setdefault(k, []).append(seg)
            f.packets.setdefault(k, []).append(segment_packets(seg))

        # 1. data and videos (complete files, renamed into place)
        data_path = self.root / self.info["data_path"].format(chunk_index=f.chunk_index, file_index=f.file_index)
        atomic_write(data_path, lambda p: pq.write_table(pa.concat_tables(f.tables), p))
        for k in self.video_keys:
            vpath = self.root / self.info["video_path"].format(video_key=k, chunk_index=f.chunk_index,
                                                               file_index=f.file_index)
            atomic_write(vpath, lambda p, k=k: concat_segments(f.segments[k], f.lengths, self.fps, p,
                                                                           f.packets[k]))

        # 2. meta: tasks, subtasks, episodes, stats; info.json last (the commit point)
        ep_stats = self._episode_stats_of(ep, columns)
        row = self._episode_row(index, ep, n, from_index, from_ts, ep_stats)
        if new_tasks or index == 0:
            self._write_index(fmt.TASKS_PATH, self.tasks, "task")
        if self.has_subtasks and (new_subtasks or index == 0):
            self._write_index(fmt.SUBTASKS_PATH, self.subtasks, "subtask")
        self._write_meta_row(row)
        self._episode_stats.append(ep_stats)
        stats = aggregate(self._episode_stats)
        self._episode_stats = [stats]  # keep the running aggregate only (memory stays flat)
        fmt.write_json(self.root / fmt.STATS_PATH, stats)
        self.info["total_episodes"] = index + 1
        self.info["total_frames"] = from_index + n
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = {"train": f"0:{index + 1}"}
        fmt.write_json(self.root / fmt.INFO_PATH, self.info)
        return index

    def _episode_columns(self, ep: _Episode, index: int, from_index: int) -> dict[str, Any]:
        n = len(ep)
        cols: dict[str, Any] = {k: ep.columns[k] for k in self.user_keys if k not in self.video_keys}
        cols["timestamp"] = (np.arange(n) / self.fps).astype(np.float32)
        cols["frame_index"] = np.arange(n, dtype=np.int64)
        cols["episode_index"] = np.full(n, index, dtype=np.int64)
        cols["index"] = np.arange(from_index, from_index + n, dtype=np.int64)
        cols["task_index"] = np.array([self.tasks[t] for t in ep.tasks], dtype=np.int64)
        if self.has_subtasks:
            cols["subtask_index"] = np.array([self.subtasks[s] for s in ep.subtasks], dtype=np.int64)
        return cols

    def _episode_stats_of(self, ep: _Episode, columns: dict[str, Any]) -> dict[str, dict]:
        out = {}
        for key, spec in self.features.items():
            if spec["dtype"] == "video":
                frames = ep.frames[key]
                out[key] = image_stats(np.stack([frames[i] for i in sample_indices(len(frames))]))
            elif spec["dtype"] != "string":
                out[key] = numeric_stats(np.asarray(columns[key]))
        return out

    def _episode_row(self, index: int, ep: _Episode, n: int, from_index: int, from_ts: float,
                     ep_stats: dict[str, dict]) -> dict[str, Any]:
        f = self._file
        row: dict[str, Any] = {"episode_index": index, "tasks": list(dict.fromkeys(ep.tasks)), "length": n,
                               "data/chunk_index": f.chunk_index, "data/file_index": f.file_index,
                               "dataset_from_index": from_index, "dataset_to_index": from_index + n}
        for k in self.video_keys:
            row.update({f"videos/{k}/chunk_index": f.chunk_index, f"videos/{k}/file_index": f.file_index,
                        f"videos/{k}/from_timestamp": from_ts, f"videos/{k}/to_timestamp": from_ts + n / self.fps})
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = self._meta_file
        for feat, st in ep_stats.items():
            for name, value in st.items():
                row[f"stats/{feat}/{name}"] = np.asarray(value).tolist()
        return row

    def _roll_if_needed(self, n_frames: int, video_bytes: int, data_bytes: int) -> None:
        f = self._file
        if not f.lengths:
            return
        data_mb = (sum(t.nbytes for t in f.tables) + data_bytes) / 2**20
        video_mb = (sum(len(s) for segs in f.segments.values() for s in segs) + video_bytes) / 2**20
        if (len(f.lengths) >= self.episodes_per_file or data_mb >= self.info["data_files_size_in_mb"]
                or video_mb >= self.info["video_files_size_in_mb"]):
            self._file = _OpenFile(*fmt.next_file(f.chunk_index, f.file_index, self.info["chunks_size"]))

    def _write_index(self, rel: str, mapping: dict[str, int], name: str) -> None:
        df = pd.DataFrame({f"{name}_index": list(mapping.values())}, index=pd.Index(list(mapping), name=name))
        atomic_write(self.root / rel, lambda p: df.to_parquet(p))

    def _write_meta_row(self, row: dict[str, Any]) -> None:
        if self._meta_table is not None and self._meta_table.num_rows >= self.episodes_per_file:
            self._meta_table = None  # roll: bounds the rewrite of the episodes file
            self._meta_file = fmt.next_file(*self._meta_file, self.info["chunks_size"])
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = self._meta_file
        new = pa.Table.from_pylist([row])
        if self._meta_table is not None and new.schema.equals(self._meta_table.schema):
            table = pa.concat_tables([self._meta_table, new])
        elif self._meta_table is not None:  # e.g. a first episode with a null-typed column
            table = pa.Table.from_pylist(self._meta_table.to_pylist() + [row])
        else:
            table = new
        self._meta_table = table
        path = self.root / fmt.EPISODES_PATH.format(chunk_index=self._meta_file[0], file_index=self._meta_file[1])
        atomic_write(path, lambda p: pq.write_table(table, p))

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Drop unfinished episodes; every finished one is already on disk."""
        self._slots.clear()

    def __enter__(self) -> "LeRobotWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_arrow(values: Any, type_: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(type_):
        flat = np.asarray(np.stack(values), dtype=type_.value_type.to_pandas_dtype()).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=type_.value_type), type_.list_size)
    return pa.array(values, type=type_)


def _check_value(key: str, spec: dict, value: Any) -> Any:
    shape = tuple(spec["shape"])
    if spec["dtype"] == "string":
        if not isinstance(value, str):
            raise WorldmotError(f"frame[{key!r}]: {type(value).__name__} (expected str)")
        return value
    arr = np.asarray(value, dtype=np.dtype(spec["dtype"]))
    if shape == (1,):
        if arr.size != 1:
            raise WorldmotError(f"frame[{key!r}]: shape {list(arr.shape)} (expected a scalar or [1])")
        return arr.reshape(()).item()
    if arr.shape != shape:
        raise WorldmotError(f"frame[{key!r}]: shape {list(arr.shape)} (expected {list(shape)})")
    return arr


def remove_dataset(root: str | Path) -> None:
    """Delete a dataset folder (tests and benchmarks)."""
    shutil.rmtree(root, ignore_errors=True)
