"""Training curves and validation samples in RUN/train.rrd (``TrainConfig.rerun``).

    rec = TrainingRecorder(run_dir, resume=resume)      # main process only (rank 0 under DDP)
    rec.log_metrics(row)                                 # every row written to RUN/metrics.jsonl
    rec.log_validation(step, true_frames, predicted_frames)
    rec.close()                                          # also runs at interpreter exit

Entities, on the timeline ``step``:

    curves/<group>/<split>/<metric>   one series per metric of the rows; ``split`` is the row's "split"
                                      ("val") or "train"; groups share a plot: loss (loss, ce, fm, st, kp), lr,
                                      grad_norm, throughput, psnr, ssim, accuracy (*_acc), error (*_mae*)
    validation/true                   a grid: one row per validation sample, one column per horizon
    validation/predicted              the same grid of the model's frames
    validation/error                  |predicted - true|, amplified 4x

A resumed run writes RUN/train-1.rrd (then -2, ...) with the recording id of RUN/train.rrd: ``rerun
RUN/train*.rrd`` shows one recording. A fresh run removes the old files.
"""
from __future__ import annotations

import atexit
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from worldmot.errors import WorldmotError
from worldmot.viz.columns import close_recording, new_recording
from worldmot.viz.images import grid, to_hwc_uint8

APPLICATION_ID = "worldmot train"
FILE_NAME = "train.rrd"
_GROUPS = [  # (pattern on the metric name, group), first match wins
    (r"^(loss|ce|fm|st|kp)$", "loss"), (r"^lr$", "lr"), (r"^grad_norm$", "grad_norm"), (r"per_s$", "throughput"),
    (r"psnr", "psnr"), (r"ssim", "ssim"), (r"_acc$", "accuracy"), (r"_mae", "error"),
]


def metric_group(name: str) -> str:
    for pattern, group in _GROUPS:
        if re.search(pattern, name):
            return group
    return _part(name)


def _part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "_"


class TrainingRecorder:
    """See the module docstring. ``max_samples``: validation samples (grid rows) shown at most.

    In the training loop (main process only), for example:

        viz = TrainingRecorder(run_dir, resume=resume) if cfg.rerun and proc.main else None
        ...
        log.write(row)
        if viz: viz.log_metrics(row)                    # the same dict, train rows and {"split": "val"} rows
        ...
        if viz: viz.log_validation(done, true, pred)    # true, pred: (N, K, 3, S, S) in [-1, 1], e.g.
                                                        # torch.stack([truth[:, k] for k in horizons], 1) and
                                                        # the detokenized imagined frames at the same k
        ...
        if viz: viz.close()
    """

    def __init__(self, run_dir: str | Path, resume: bool = False, max_samples: int = 8):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        first = self.run_dir / FILE_NAME
        recording_id = None
        if resume and first.exists():
            recording_id = _recording_id(first)
            n = 1
            while (self.run_dir / f"train-{n}.rrd").exists():
                n += 1
            self.path = self.run_dir / f"train-{n}.rrd"
        else:
            for old in [first, *self.run_dir.glob("train-*.rrd")]:
                old.unlink(missing_ok=True)
            self.path = first
        self.rec = new_recording(APPLICATION_ID, recording_id=recording_id, name=self.run_dir.name)
        self.rec.save(self.path)
        self._named: set[str] = set()
        self._groups: list[str] = []
        self._has_validation = False
        self._blueprint: tuple | None = None
        self._closed = False
        atexit.register(self.close)

    def log_metrics(self, row: dict[str, Any]) -> None:
        """A metrics row: ``{"step": int, "split": "val" (optional), name: number, ...}``; non-numeric and
        non-finite values are skipped."""
        self._check_open()
        if "step" not in row:
            raise WorldmotError(f"metrics row {sorted(row)}: no 'step'")
        split = _part(str(row.get("split", "train")))
        self.rec.set_time("step", sequence=int(row["step"]))
        for name, value in row.items():
            if name in ("step", "split") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            group = metric_group(name)
            entity = f"curves/{group}/{split}/{_part(name)}"
            if entity not in self._named:
                label = name if split == "train" else f"{split} {name}"
                self.rec.log(entity, rr.SeriesLines(names=[label]), static=True)
                self._named.add(entity)
                if group not in self._groups:
                    self._groups.append(group)
            self.rec.log(entity, rr.Scalars(float(value)))
        self._send_blueprint()

    def log_validation(self, step: int, true_frames: Any, predicted_frames: Any,
                       value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        """Validation samples at training step ``step``. Frames: (N, K, 3, S, S) floats in ``value_range``
        (what WorldModel.detokenize_frames gives, stacked over K horizons) or (N, K, H, W, 3) uint8; (N, ...)
        without K is one horizon. Both arguments have the same shape."""
        self._check_open()
        true = to_hwc_uint8(true_frames, value_range, what="true_frames")
        pred = to_hwc_uint8(predicted_frames, value_range, what="predicted_frames")
        if true.shape != pred.shape:
            raise WorldmotError(f"log_validation: true_frames {list(true.shape)} and predicted_frames "
                                f"{list(pred.shape)} differ (expected the same shape)")
        if true.ndim == 4:
            true, pred = true[:, None], pred[:, None]
        if true.ndim != 5:
            raise WorldmotError(f"log_validation: frames of shape {list(true.shape)} (expected (N, K, H, W, 3) "
                                "or (N, K, 3, H, W))")
        true, pred = true[:self.max_samples], pred[:self.max_samples]
        error = np.clip(np.abs(true.astype(np.int16) - pred.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        self.rec.set_time("step", sequence=int(step))
        for name, frames in (("true", true), ("predicted", pred), ("error", error)):
            self.rec.log(f"validation/{name}", rr.Image(grid(frames)))
        self._has_validation = True
        self._send_blueprint()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close_recording(self.rec)
        atexit.unregister(self.close)

    def __enter__(self) -> "TrainingRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise WorldmotError(f"{self.path}: recorder already closed")

    def _send_blueprint(self) -> None:
        key = (tuple(self._groups), self._has_validation)
        if key == self._blueprint:
            return
        self._blueprint = key
        plots = [rrb.TimeSeriesView(origin=f"curves/{g}", name=g) for g in self._groups]
        parts = []
        if self._has_validation:
            parts.append(rrb.Horizontal(*[rrb.Spatial2DView(origin=f"validation/{n}", name=f"validation: {n}")
                                          for n in ("true", "predicted", "error")]))
        if plots:
            parts.append(rrb.Grid(*plots))
        self.rec.send_blueprint(rrb.Blueprint(rrb.Vertical(*parts), collapse_panels=False),
                                make_active=True, make_default=True)


def _recording_id(path: Path) -> str | None:
    """The recording id of an existing .rrd (None if it cannot be read)."""
    try:
        from rerun.chunk import RrdReader

        recs = RrdReader(path).recordings()
        return recs[0].recording_id if recs else None
    except Exception:  # a file cut by a kill: a new id, the curves still show side by side
        return None
