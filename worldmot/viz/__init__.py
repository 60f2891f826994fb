"""worldmot.viz: Rerun recordings of datasets, episodes (evaluation, planning) and training.

    dataset_to_rrd(root, out, episodes)      a LeRobot dataset, one tab per episode (``worldmot viz dataset``)
    EpisodeRecorder(path)                    real vs imagined frames, planner costs, actions, progress, text
    TrainingRecorder(run_dir)                loss curves and validation samples in RUN/train.rrd

Read a recording back without a viewer with ``rerun.chunk.RrdReader(path).stream()``, or ``rerun rrd stats``.
Names are imported on first use, so that an evaluation importing EpisodeRecorder does not load the dataset
reader (pyarrow, pandas, PyAV).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "dataset_to_rrd": "worldmot.viz.dataset",
    "ImagePolicy": "worldmot.viz.images",
    "EpisodeRecorder": "worldmot.viz.episodes",
    "TrainingRecorder": "worldmot.viz.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'worldmot.viz' has no attribute {name!r}")
