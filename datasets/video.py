"""MP4 encoding, concatenation and random-access decoding with PyAV.

Episodes are encoded one at a time into in-memory MP4 segments; a dataset video file is the segments of its
episodes remuxed back to back (packets copied, never re-encoded), so appending an episode costs a copy of
the file, not an encode of it. Frame ``j`` of the segment that starts ``n`` frames into the file sits at
``(n + j) / fps`` seconds, the timestamps LeRobot expects (``from_timestamp + timestamp``).
"""
from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from worldmot.errors import WorldmotError

# SVT-AV1 logs its whole configuration to stderr at every encoder start unless told otherwise.
os.environ.setdefault("SVT_LOG", "1")

# libx264 by default: at 64x64 a whole recording (env rendering + policy + encoding on 2 cores) runs ~15-20%
# faster than with SVT-AV1 (tools/benchmarks/recording_speed.py: 308 vs 263 steps/s with 2 workers), which is
# what keeps it above 300 steps/s; AV1 files are ~30% smaller. LeRobot decodes both; --codec libsvtav1 gives its default.
DEFAULT_CODEC = "libx264"
# LeRobot's settings (yuv420p, g=2, crf=30); x264 without B-frames so that dts == pts and segments can be
# concatenated without reordering gaps.
CODEC_OPTIONS: dict[str, dict[str, str]] = {
    "libsvtav1": {"g": "2", "crf": "30", "preset": "12"},
    "libx264": {"g": "2", "crf": "23", "preset": "veryfast", "bf": "0"},
    "mpeg4": {"g": "2", "qscale": "3"},
}
# The names LeRobot writes into info.json features[...]["info"]["video.codec"].
CODEC_NAMES = {"libsvtav1": "av1", "libx264": "h264", "mpeg4": "mpeg4"}


def available_codec(preferred: str = DEFAULT_CODEC) -> str:
    """The preferred encoder when this PyAV build has it, else libx264, else mpeg4; a name that is none of
    these is an error."""
    if preferred not in CODEC_OPTIONS:
        raise WorldmotError(f"--codec {preferred!r}: unknown (expected one of {sorted(CODEC_OPTIONS)})")
    for name in (preferred, "libx264", "mpeg4"):
        if name in av.codecs_available:
            return name
    raise RuntimeError("PyAV has none of the encoders libsvtav1, libx264, mpeg4")


def encode_segment(frames: list[np.ndarray] | np.ndarray, fps: int, codec: str = DEFAULT_CODEC) -> bytes:
    """Encode frames (N, H, W, 3) uint8 RGB into a complete MP4 held in memory.

    H and W must be even (yuv420p). Frame j gets pts j / fps.
    """
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = dict(CODEC_OPTIONS.get(codec, {"g": "2"}))
        for j, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = j, Fraction(1, fps)
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return buf.getvalue()


def segment_packets(segment: bytes) -> list[tuple]:
    """The encoded packets of an MP4 segment as (data, pts, dts, is_keyframe, duration), in the segment's
    time base."""
    with av.open(io.BytesIO(segment)) as src:
        ist = src.streams.video[0]
        return [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in src.demux(ist) if p.size]


def concat_segments(segments: list[bytes], lengths: list[int], fps: int, path: Path,
                    packets: list[list[tuple]] | None = None) -> None:
    """Remux MP4 segments (each ``lengths[i]`` frames) into one MP4 at ``path``, shifted back to back.

    ``packets`` (from segment_packets, one list per segment) saves demuxing the segments again.
    """
    packets = packets or [segment_packets(s) for s in segments]
    with av.open(io.BytesIO(segments[0])) as first, av.open(str(path), "w", format="mp4") as out:
        ist = first.streams.video[0]
        tb = ist.time_base
        ost = out.add_stream_from_template(ist, opaque=True)
        offset = 0
        for seg_packets, n in zip(packets, lengths):
            shift = int(round(Fraction(offset, fps) / tb))
            for data, pts, dts, key, duration in seg_packets:
                pkt = av.Packet(data)
                pkt.pts, pkt.dts, pkt.is_keyframe, pkt.time_base = pts + shift, dts + shift, key, tb
                # without a duration the last sample of a file gets none, and a 1-frame file decodes empty
                pkt.duration = duration or int(round(Fraction(1, fps) / tb))
                pkt.stream = ost
                out.mux(pkt)
            offset += n


class VideoFile:
    """Random access to the frames of one MP4, decoding only what is asked for.

    The container opens on first use (so an unopened VideoFile pickles into DataLoader workers) and is
    reused for later calls.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._container: av.container.InputContainer | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_container": None}

    def _stream(self):
        if self._container is None:
            self._container = av.open(str(self.path))
            # one decoding thread: small frames gain nothing from more, and decoder threads alive in a
            # process that forks DataLoader workers can leave a lock held in the child
            self._container.streams.video[0].codec_context.thread_count = 1
        return self._container, self._container.streams.video[0]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames_at(self, timestamps: list[float] | np.ndarray, fps: int) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 at the given file timestamps (seconds, multiples of 1/fps).

        Seeks to the keyframe before the earliest wanted frame and decodes forward; the frame whose pts
        rounds to the same 1/fps slot is taken. Raises KeyError naming a timestamp the file does not hold.
        """
        wanted = {int(round(t * fps)): None for t in timestamps}
        container, stream = self._stream()
        slot_of = lambda f: int(round(float(f.pts * stream.time_base) * fps))  # noqa: E731
        first = min(wanted)
        container.seek(int(round(Fraction(first, fps) / stream.time_base)), stream=stream, backward=True,
                       any_frame=False)
        last = max(wanted)
        for frame in container.decode(stream):
            slot = slot_of(frame)
            if slot in wanted and wanted[slot] is None:
                wanted[slot] = frame.to_ndarray(format="rgb24")
            if slot >= last:
                break
        missing = [s for s, v in wanted.items() if v is None]
        if missing:
            raise KeyError(f"{self.path}: no frame at t={missing[0] / fps:.4f}s")
        return np.stack([wanted[int(round(t * fps))] for t in timestamps])
