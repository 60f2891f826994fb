"""Reading .rrd files back without a viewer (rerun's RrdReader), for the tests."""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from rerun.chunk import RrdReader


class Recording:
    """The data rows of a .rrd's (first) recording, by entity path (without the leading /)."""

    def __init__(self, path: Path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader = RrdReader(path)
            self.chunks = [c for c in reader.stream() if not c.entity_path.startswith("/__")]
        self.has_footer = not any("no footer" in str(w.message) for w in caught)
        self.recordings = reader.recordings()
        self.blueprints = reader.blueprints()
        self.reader = reader
        self.temporal: dict[str, list] = defaultdict(list)
        self.static: dict[str, list] = defaultdict(list)
        for c in self.chunks:
            (self.static if c.is_static else self.temporal)[c.entity_path.lstrip("/")].append(c)

    def rows(self, entity: str) -> int:
        return sum(c.num_rows for c in self.temporal[entity])

    def entities(self, prefix: str = "") -> set[str]:
        return {e for e in self.temporal if e.startswith(prefix)}

    def column(self, entity: str, name: str, static: bool = False) -> list:
        """Values of component ``name`` (e.g. "Scalars:scalars") or timeline ``name``, sorted by the first
        timeline (each row's component value is a list: one batch per row)."""
        rows = []
        for c in (self.static if static else self.temporal)[entity]:
            b = c.to_record_batch()
            key = b.column(c.timeline_names[0]).to_pylist() if c.timeline_names else [0] * c.num_rows
            rows += list(zip(key, b.column(name).to_pylist()))
        return [v for _, v in sorted(rows, key=lambda r: r[0])]

    def timelines(self, entity: str) -> set[str]:
        return {t for c in self.temporal[entity] for t in c.timeline_names}

    def images(self, entity: str) -> list[np.ndarray]:
        """The entity's frames decoded to (H, W, 3) uint8, raw Image or JPEG EncodedImage alike."""
        out = []
        for c in self.temporal[entity] or self.static[entity]:
            b = c.to_record_batch()
            t = b.column(c.timeline_names[0]).to_pylist() if c.timeline_names else [0] * c.num_rows
            if "Image:buffer" in b.schema.names:
                for k, buf, fmt in zip(t, b.column("Image:buffer").to_pylist(), b.column("Image:format").to_pylist()):
                    f = fmt[0]
                    assert f["channel_datatype"] == 6 and f["color_model"] == 2  # U8, RGB
                    out.append((k, np.asarray(buf[0], np.uint8).reshape(f["height"], f["width"], 3)))
            else:
                for k, blob, media in zip(t, b.column("EncodedImage:blob").to_pylist(),
                                          b.column("EncodedImage:media_type").to_pylist()):
                    assert media == ["image/jpeg"]
                    img = cv2.imdecode(np.asarray(blob[0], np.uint8), cv2.IMREAD_COLOR)
                    out.append((k, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
        return [img for _, img in sorted(out, key=lambda r: r[0])]

    def is_jpeg(self, entity: str) -> bool:
        return all("EncodedImage:blob" in c.to_record_batch().schema.names for c in self.temporal[entity])

    def blueprint(self) -> dict[str, dict]:
        """Blueprint entities (views and containers) -> their components (latest row), of the largest
        blueprint (a recorder that adds episodes sends a growing blueprint now and then)."""
        largest: dict[str, dict] = {}
        for store in self.blueprints:
            out = {}
            for c in self.reader.stream(store=store):
                b = c.to_record_batch()
                out[c.entity_path.lstrip("/")] = {n: b.column(n).to_pylist()[-1] for n in b.schema.names if ":" in n}
            largest = max(largest, out, key=len)
        return largest


