"""worldmot.datasets: LeRobot v3.0 episode datasets — writer, reader (v3.0 and v2.1), training windows,
and the recording loop behind ``worldmot record``."""
from worldmot.datasets.reader import EpisodeInfo, LeRobotDatasetReader
from worldmot.datasets.windows import (FrameDataset, WindowDataset, collate_windows, delta_timestamps_to_indices,
                                       split_episodes)
from worldmot.datasets.writer import LeRobotWriter

__all__ = ["EpisodeInfo", "FrameDataset", "LeRobotDatasetReader", "LeRobotWriter", "WindowDataset",
           "collate_windows", "delta_timestamps_to_indices", "split_episodes"]
