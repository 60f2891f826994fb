"""The LeRobot v3.0 layout: paths, default features, feature specs and their Arrow types.

One place for the constants both the writer and the reader use, so that they cannot drift apart.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from worldmot.errors import WorldmotError
from worldmot.io import atomic_write

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
SUBTASKS_PATH = "meta/subtasks.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)

# Columns every frame row carries besides the dataset's own features (LeRobot's DEFAULT_FEATURES).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
# The per-frame reasoning text, stored the way LeRobot stores subtasks: an index into meta/subtasks.parquet.
SUBTASK_FEATURE = {"subtask_index": {"dtype": "int64", "shape": [1], "names": None}}

_ARROW = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32(),
          "bool": pa.bool_(), "string": pa.string()}


def is_visual(spec: dict) -> bool:
    return spec["dtype"] in ("video", "image")


def arrow_type(key: str, spec: dict) -> pa.DataType:
    """Arrow type of a non-visual feature column: a scalar for shape (1,), a fixed-size list for (d,)."""
    if spec["dtype"] not in _ARROW:
        raise WorldmotError(f"feature {key!r}: dtype {spec['dtype']!r} is not one of {sorted(_ARROW)}")
    shape = tuple(spec["shape"])
    if shape == (1,):
        return _ARROW[spec["dtype"]]
    if len(shape) == 1:
        return pa.list_(_ARROW[spec["dtype"]], shape[0])
    raise WorldmotError(f"feature {key!r}: shape {list(shape)} is not supported (expected [1] or [d])")


def next_file(chunk_index: int, file_index: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """The (chunk, file) pair after this one: files fill a chunk, then the next chunk starts at file 0."""
    file_index += 1
    if file_index >= chunks_size:
        return chunk_index + 1, 0
    return chunk_index, file_index


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=4, default=_jsonable)))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")
