"""A LeRobot dataset as a Rerun recording (``worldmot viz dataset``).

Each episode is a subtree ``episode_NNN/`` on two timelines, ``frame_index`` (sequence) and ``timestamp``
(seconds from the episode's start):

    episode_000/cameras/<camera>   every camera, one image per frame (JPEG when large, see ImagePolicy)
    episode_000/state              observation.state, one named series per dimension (likewise action and
    episode_000/action             any other numeric feature: observation.environment_state -> environment_state)
    episode_000/reward|done|success  next.reward / next.done / next.success (done and success as 0/1)
    episode_000/instruction        the task text, logged at the first frame and whenever it changes
    episode_000/subtask            the subtask (reasoning) text, logged whenever it changes

The blueprint has one tab per episode: cameras on top, series and text below. The file is written under a
temporary name and renamed when complete, so a FILE.rrd is never a half-written one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rerun as rr
import rerun.blueprint as rrb
from tqdm import tqdm

from worldmot.datasets import format as fmt
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.errors import WorldmotError
from worldmot.io import atomic_write
from worldmot.viz.columns import ColumnBuffer, close_recording, new_recording
from worldmot.viz.images import ImagePolicy
from worldmot.viz.paths import entity_part, episode_path

APPLICATION_ID = "worldmot dataset"
TIMELINES = {"frame_index": "sequence", "timestamp": "duration"}
INDEX_KEYS = set(fmt.DEFAULT_FEATURES) | {"subtask_index"}
TEXT_ENTITIES = ("instruction", "subtask")
_FRAMES_PER_READ = 256  # frames decoded (and held in memory) at a time


@dataclass(frozen=True)
class DatasetLayout:
    """Which feature goes to which entity (relative to the episode's subtree)."""

    cameras: dict[str, str]  # feature key -> "cameras/<name>"
    series: dict[str, str]  # numeric feature key -> entity name
    texts: dict[str, str]  # string feature key -> entity name
    series_names: dict[str, list[str]]  # numeric feature key -> one name per dimension

    @property
    def vectors(self) -> list[str]:
        """Entities of series with more than one dimension (a plot each); the others share one plot."""
        return [self.series[k] for k, n in self.series_names.items() if len(n) > 1]

    @property
    def scalars(self) -> list[str]:
        return [self.series[k] for k, n in self.series_names.items() if len(n) == 1]


@dataclass
class DatasetRecording:
    path: Path
    episodes: list[int]
    frames: int  # frame rows logged (over all selected episodes)
    jpeg: bool  # whether camera frames went out as JPEG


def layout_of(reader: LeRobotDatasetReader) -> DatasetLayout:
    prefixes = ("observation.images.", "observation.image.")
    cameras = {k: "cameras/" + entity_part(_short(k, prefixes)) for k in reader.camera_keys}
    series, texts, names = {}, {}, {}
    taken = set(TEXT_ENTITIES) | {"cameras"}
    for key, spec in reader.features.items():
        if key in INDEX_KEYS or key in reader.camera_keys:
            continue
        name = entity_part(_short(key, ("observation.", "next.")).replace(".", "_"))
        if name in taken:
            name = entity_part(key.replace(".", "_"))
        taken.add(name)
        if spec["dtype"] == "string":
            texts[key] = name
        elif spec["dtype"] in ("float32", "float64", "int32", "int64", "bool") and len(spec["shape"]) == 1:
            series[key] = name
            names[key] = _dimension_names(name, spec)
    return DatasetLayout(cameras, series, texts, names)


def _short(key: str, prefixes: tuple[str, ...]) -> str:
    for p in prefixes:
        if key.startswith(p) and len(key) > len(p):
            return key[len(p):]
    return key


def _dimension_names(name: str, spec: dict) -> list[str]:
    d = int(spec["shape"][0])
    names = spec.get("names")
    if isinstance(names, dict) and len(names) == 1:  # LeRobot's {"motors": [...]} form
        names = next(iter(names.values()))
    if isinstance(names, (list, tuple)) and len(names) == d and all(isinstance(n, str) for n in names):
        return [str(n) for n in names]
    return [name] if d == 1 else [f"{name}[{i}]" for i in range(d)]


def dataset_blueprint(layout: DatasetLayout, episodes: list[int]) -> rrb.Blueprint:
    """One tab per episode: the cameras side by side on top; below, a plot per vector series, one plot of the
    one-dimensional series (reward, done, success), and the instruction/subtask log."""
    tabs = []
    for ep in episodes:
        root = episode_path(ep)
        cams = [rrb.Spatial2DView(origin=f"{root}/{e}", name=e.split("/", 1)[1]) for e in layout.cameras.values()]
        plots = [rrb.TimeSeriesView(origin=f"{root}/{e}", name=e) for e in layout.vectors]
        if layout.scalars:
            plots.append(rrb.TimeSeriesView(origin=root, contents=[f"{root}/{e}" for e in layout.scalars],
                                            name=", ".join(layout.scalars)))
        texts = [f"{root}/{e}" for e in (*TEXT_ENTITIES, *layout.texts.values())]
        plots.append(rrb.TextLogView(origin=root, contents=texts, name="text"))
        rows = ([rrb.Horizontal(*cams)] if cams else []) + [rrb.Horizontal(*plots)]
        tabs.append(rrb.Vertical(*rows, row_shares=[3, 2] if cams else None, name=f"episode {ep}"))
    return rrb.Blueprint(rrb.Tabs(*tabs), collapse_panels=False)


def dataset_to_rrd(root: str | Path, out: str | Path, episodes: list[int] | None = None,
                   images: ImagePolicy | None = None, progress: bool = True) -> DatasetRecording:
    """Write episodes ``episodes`` (all if None) of the dataset at ``root`` to ``out`` (.rrd)."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise WorldmotError(f"{root}: no such folder (expected a LeRobot dataset folder)")
    if out.is_dir():
        raise WorldmotError(f"{out}: is a folder (expected a .rrd file path)")
    reader = LeRobotDatasetReader(root)
    eps = list(range(reader.num_episodes)) if episodes is None else list(dict.fromkeys(int(e) for e in episodes))
    if not eps:
        raise WorldmotError(f"{root}: no episodes to show (the dataset has {reader.num_episodes})")
    for e in eps:
        reader.episode(e)  # one-line error for an index out of range
    layout = layout_of(reader)
    images = dataclasses.replace(images or ImagePolicy())
    frame_bytes = sum(int(np.prod(reader.features[k]["shape"])) for k in reader.camera_keys)
    raw = sum(reader.episode(e).length for e in eps) * frame_bytes
    if images.compress == "auto" and raw > images.raw_budget_mb * 2**20:
        images.compress = "always"  # the whole recording in one form

    jpeg = False
    frames = 0

    def write(tmp: Path) -> None:
        nonlocal jpeg, frames
        rec = new_recording(APPLICATION_ID, name=root.name)
        try:
            rec.save(tmp, default_blueprint=dataset_blueprint(layout, eps))
            buf = ColumnBuffer(rec, TIMELINES, images)
            for ep in tqdm(eps, desc="episodes", disable=not progress, leave=False):
                frames += _log_episode(rec, buf, reader, layout, ep)
            jpeg = buf.jpeg_rows > 0
        finally:
            close_recording(rec)

    try:
        atomic_write(out, write)
    finally:
        reader.close()
    return DatasetRecording(out, eps, frames, jpeg)


def _log_episode(rec: rr.RecordingStream, buf: ColumnBuffer, reader: LeRobotDatasetReader, layout: DatasetLayout,
                 ep: int) -> int:
    root = episode_path(ep)
    n = reader.episode(ep).length
    table = reader.episode_table(ep)
    index = table["frame_index"].astype(np.int64) if "frame_index" in table else np.arange(n)
    seconds = table["timestamp"].astype(np.float64) if "timestamp" in table else index / reader.fps
    times = [{"frame_index": int(i), "timestamp": float(s)} for i, s in zip(index, seconds)]

    for key, name in layout.series.items():
        rec.log(f"{root}/{name}", rr.SeriesLines(names=layout.series_names[key]), static=True)
        values = table[key].astype(np.float64).reshape(n, -1)
        for t, v in zip(times, values):
            buf.scalars(f"{root}/{name}", t, v)

    tasks = table["task_index"] if "task_index" in table else None
    _log_changes(buf, f"{root}/instruction", times,
                 [reader.tasks[i] if 0 <= i < len(reader.tasks) else "" for i in tasks] if tasks is not None
                 else [reader.episode(ep).tasks[0] if reader.episode(ep).tasks else ""] + [None] * (n - 1))
    if "subtask_index" in table and reader.subtasks:
        subs = reader.subtasks
        texts = [subs[i] if 0 <= i < len(subs) else "" for i in table["subtask_index"]]
        _log_changes(buf, f"{root}/subtask", times, texts)
    for key, name in layout.texts.items():
        _log_changes(buf, f"{root}/{name}", times, [str(s) for s in table[key]])
    buf.flush()

    for key, name in layout.cameras.items():
        for start in range(0, n, _FRAMES_PER_READ):
            idx = np.arange(start, min(n, start + _FRAMES_PER_READ))
            for i, frame in zip(idx, reader.episode_frames(ep, key, idx)):
                buf.image(f"{root}/{name}", times[i], frame)
            buf.flush()
    buf.forget(root)
    return n


def _log_changes(buf: ColumnBuffer, entity: str, times: list[dict], texts: list[str | None]) -> None:
    """A text row at the first frame and wherever the text changes (empty and None texts are not logged)."""
    last = None
    for t, text in zip(times, texts):
        if text is not None and text != last:
            if text:
                buf.text(entity, t, text)
            last = text
