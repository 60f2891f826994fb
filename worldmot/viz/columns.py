"""Buffered logging: rows kept in memory per entity and sent as columns, one ``send_columns`` per entity.

One ``rec.log`` costs 30-200 us (an image more); a column of 50 rows costs about as much as one row. An
evaluation that logs every step therefore appends to a ``ColumnBuffer`` and flushes it every few steps, at
the end of an episode and on close. Rows of one entity carry the same timelines.

    buf = ColumnBuffer(rec, {"step": "sequence", "timestamp": "duration"}, ImagePolicy())
    buf.scalars("episode_000/reward", {"step": 3, "timestamp": 0.15}, [0.2])
    buf.flush()
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rerun as rr

from worldmot.errors import WorldmotError
from worldmot.viz.images import ImagePolicy, encode_jpeg

TIMELINE_KINDS = ("sequence", "duration")


def new_recording(application_id: str, recording_id: str | None = None, name: str | None = None) -> rr.RecordingStream:
    """A recording stream whose rows carry only the timelines they are given (no log_time / log_tick)."""
    rec = rr.RecordingStream(application_id, recording_id=recording_id)
    rec.set_log_time_enabled(False)
    rec.set_log_tick_enabled(False)
    if name:
        rec.send_recording_name(name)
    return rec


def close_recording(rec: rr.RecordingStream) -> None:
    """Flush everything to the sinks and close them (a file gets its footer)."""
    rec.flush()
    rec.disconnect()


@dataclass
class _Column:
    kind: str  # scalars | image | text | bar
    timelines: tuple[str, ...]
    rows: list[tuple[tuple, Any, str | None]] = field(default_factory=list)  # (times, value, level)
    jpeg: bool | None = None  # images: decided at the first flush, then kept (one archetype per entity)
    width: int | None = None  # scalars: values per row


class ColumnBuffer:
    """Pending rows of one recording, by entity path. ``timelines``: name -> "sequence" | "duration"
    (durations in seconds)."""

    def __init__(self, rec: rr.RecordingStream, timelines: dict[str, str], images: ImagePolicy | None = None):
        for name, kind in timelines.items():
            if kind not in TIMELINE_KINDS:
                raise WorldmotError(f"timeline {name!r}: kind {kind!r} (expected one of {TIMELINE_KINDS})")
        self.rec = rec
        self.timelines = dict(timelines)
        self.images = images or ImagePolicy()
        self._columns: dict[str, _Column] = {}
        self.pending = 0  # rows not sent yet
        self.jpeg_rows = 0  # image rows sent as JPEG so far

    # ------------------------------------------------------------------ rows
    def _add(self, entity: str, kind: str, times: dict[str, float], value: Any, level: str | None = None) -> None:
        col = self._columns.get(entity)
        names = tuple(times)
        if col is None:
            unknown = [n for n in names if n not in self.timelines]
            if unknown:
                raise WorldmotError(f"{entity}: unknown timeline(s) {unknown} "
                                    f"(expected some of {list(self.timelines)})")
            col = self._columns[entity] = _Column(kind, names)
        elif col.kind != kind or col.timelines != names:
            raise WorldmotError(f"{entity}: a {kind} row on timelines {list(names)} after {col.kind} rows on "
                                f"{list(col.timelines)} (one kind and one set of timelines per entity)")
        col.rows.append((tuple(times[n] for n in names), value, level))  # one append: safe against signals
        self.pending += 1

    def scalars(self, entity: str, times: dict[str, float], values: Any) -> None:
        v = np.asarray(values, np.float64).reshape(-1)
        col = self._columns.get(entity)
        if col is not None and col.width is not None and col.width != len(v):
            raise WorldmotError(f"{entity}: {len(v)} values (expected {col.width}, as in the entity's first row)")
        self._add(entity, "scalars", times, v)
        self._columns[entity].width = len(v)

    def image(self, entity: str, times: dict[str, float], frame: np.ndarray) -> None:
        """``frame``: (H, W, 3) uint8 (see images.to_hwc_uint8)."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise WorldmotError(f"{entity}: image of shape {list(frame.shape)} and dtype {frame.dtype} "
                                "(expected (H, W, 3) uint8)")
        self._add(entity, "image", times, frame)

    def text(self, entity: str, times: dict[str, float], text: str, level: str | None = None) -> None:
        self._add(entity, "text", times, str(text), level)

    def bar(self, entity: str, times: dict[str, float], values: Any) -> None:
        self._add(entity, "bar", times, np.asarray(values, np.float64).reshape(-1))

    # ------------------------------------------------------------------ sending
    def flush(self) -> None:
        """Send every pending row (rows stay in the SDK's own batcher until it writes them out)."""
        for entity, col in self._columns.items():
            if col.rows:
                rows, col.rows = col.rows, []
                self._send(entity, col, rows)
        self.pending = 0

    def forget(self, prefix: str) -> None:
        """Drop the (already flushed) state of entities under ``prefix``: a finished episode's columns."""
        for entity in [e for e in self._columns if e == prefix or e.startswith(prefix + "/")]:
            if self._columns[entity].rows:
                raise WorldmotError(f"{entity}: rows not flushed yet")
            del self._columns[entity]

    def _indexes(self, col: _Column, rows: list[tuple]) -> list[rr.TimeColumn]:
        out = []
        for i, name in enumerate(col.timelines):
            values = [r[0][i] for r in rows]
            if self.timelines[name] == "sequence":
                out.append(rr.TimeColumn(name, sequence=np.asarray(values, np.int64)))
            else:
                out.append(rr.TimeColumn(name, duration=np.asarray(values, np.float64)))
        return out

    def _send(self, entity: str, col: _Column, rows: list[tuple]) -> None:
        values = [r[1] for r in rows]
        if col.kind == "bar":
            # BarChart.columns cannot batch several rows (rerun-sdk 0.41): one log per row
            for times, v, _ in rows:
                for name, t in zip(col.timelines, times):
                    if self.timelines[name] == "sequence":
                        self.rec.set_time(name, sequence=int(t))
                    else:
                        self.rec.set_time(name, duration=float(t))
                self.rec.log(entity, rr.BarChart(v))
            self.rec.reset_time()
            return
        indexes = self._indexes(col, rows)
        if col.kind == "scalars":
            columns = rr.Scalars.columns(scalars=np.stack(values))
        elif col.kind == "text":
            columns = rr.TextLog.columns(text=values, level=[r[2] or "INFO" for r in rows])
        else:
            columns = self._image_columns(col, values)
        self.rec.send_columns(entity, indexes=indexes, columns=columns)

    def _image_columns(self, col: _Column, frames: list[np.ndarray]):
        if col.jpeg is None:
            h, w = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
            col.jpeg = self.images.use_jpeg(h, w, len(frames))
        elif not col.jpeg:
            self.images.raw_bytes += sum(f.nbytes for f in frames)
        if col.jpeg:
            blobs = [encode_jpeg(f, self.images.jpeg_quality) for f in frames]
            self.jpeg_rows += len(blobs)
            return rr.EncodedImage.columns(blob=blobs, media_type=["image/jpeg"] * len(blobs))
        formats = [_rgb_format(f.shape[0], f.shape[1]) for f in frames]
        if len({f.shape for f in frames}) == 1:  # one (K, H*W*3) array: rerun's fast path (a list costs ~1 ms)
            return rr.Image.columns(buffer=np.stack(frames).reshape(len(frames), -1), format=formats)
        return rr.Image.columns(buffer=[np.ascontiguousarray(f).reshape(-1) for f in frames], format=formats)


_FORMATS: dict[tuple[int, int], Any] = {}


def _rgb_format(h: int, w: int):
    if (h, w) not in _FORMATS:
        _FORMATS[(h, w)] = rr.components.ImageFormat(width=w, height=h, color_model="RGB", channel_datatype="U8")
    return _FORMATS[(h, w)]
