"""worldmot.datasets: the LeRobot v3.0 episode dataset format — writer, reader (v3.0 and v2.1), training windows,
stats, video. What fills a dataset from an env (``worldmot record``) is worldmot.recording, a layer above."""
import importlib.machinery
import importlib.util
import os
import sys


def _load_the_other_datasets() -> None:
    """Replace this module with the ``datasets`` found on sys.path outside this checkout (Hugging Face's).

    This folder installs as ``worldmot.datasets``; but a Python started in the checkout's root (a script,
    a notebook, LeRobot's loader) finds it first as top-level ``datasets`` and would shadow Hugging Face's.
    Python's import returns whatever sits in sys.modules once the module ran, so the real one takes over.
    """
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != checkout]
    spec = importlib.machinery.PathFinder.find_spec("datasets", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{os.path.dirname(os.path.abspath(__file__))} is worldmot.datasets (import it under that "
                          "name); no other package named `datasets` (Hugging Face's) is installed", name="datasets")
    module = importlib.util.module_from_spec(spec)
    sys.modules["datasets"] = module
    spec.loader.exec_module(module)


if __name__ == "datasets":
    _load_the_other_datasets()
else:
    from worldmot.datasets.reader import EpisodeInfo, LeRobotDatasetReader
    from worldmot.datasets.windows import (FrameDataset, WindowDataset, collate_windows, delta_timestamps_to_indices,
                                           split_episodes)
    from worldmot.datasets.writer import LeRobotWriter

    __all__ = ["EpisodeInfo", "FrameDataset", "LeRobotDatasetReader", "LeRobotWriter", "WindowDataset",
               "collate_windows", "delta_timestamps_to_indices", "split_episodes"]
