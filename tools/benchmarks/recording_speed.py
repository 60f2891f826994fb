"""Recording throughput: env steps/s including rendering, the scripted policy, encoding and finalizing.

    python tools/benchmarks/recording_speed.py [--env worldmot/Push-v0] [--episodes 20] [--workers 1 2] [--codecs libsvtav1 libx264]

Prints one row per (workers, codec): the median of --repeats runs, and a row for the writer alone on
synthetic frames (no env) so that env and dataset costs can be told apart.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from worldmot.recording import record
from worldmot.datasets.writer import LeRobotWriter


def writer_only(codec: str, episodes: int, length: int, size: int) -> float:
    feats = {"observation.images.top": {"dtype": "video", "shape": [size, size, 3], "names": None},
             "observation.state": {"dtype": "float32", "shape": [2], "names": None},
             "action": {"dtype": "float32", "shape": [2], "names": None},
             "next.reward": {"dtype": "float32", "shape": [1], "names": None}}
    rng = np.random.default_rng(0)
    frames = [(rng.integers(0, 6, (size, size, 3)) * 40).astype(np.uint8) for _ in range(length)]
    root = Path(tempfile.mkdtemp()) / "ds"
    t = time.perf_counter()
    with LeRobotWriter(root, 10, feats, codec=codec) as w:
        for _ in range(episodes):
            for i in range(length):
                w.add_frame({"observation.images.top": frames[i], "observation.state": np.zeros(2),
                             "action": np.zeros(2), "next.reward": 0.0}, task="t", subtask="s")
            w.save_episode()
    dt = time.perf_counter() - t
    shutil.rmtree(root.parent)
    return episodes * length / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="worldmot/Push-v0")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--codecs", nargs="+", default=["libsvtav1", "libx264"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print(f"| what | workers | codec | steps/s (median of {args.repeats}) | runs |")
    print("|---|---|---|---|---|")
    for codec in args.codecs:
        runs = [writer_only(codec, args.episodes, 50, args.image_size) for _ in range(args.repeats)]
        print(f"| writer only, 50-step episodes | - | {codec} | {statistics.median(runs):.0f} | "
              f"{', '.join(f'{r:.0f}' for r in runs)} |", flush=True)
        for k in args.workers:
            runs = []
            for _ in range(args.repeats):
                out = Path(tempfile.mkdtemp()) / "ds"
                res = record(args.env, "scripted", args.episodes, out, num_envs=k, image_size=args.image_size,
                             codec=codec, progress=False)
                runs.append(res.steps_per_s)
                shutil.rmtree(out.parent)
            print(f"| record {args.env} {args.episodes} ep | {k} | {codec} | {statistics.median(runs):.0f} | "
                  f"{', '.join(f'{r:.0f}' for r in runs)} |", flush=True)


if __name__ == "__main__":
    main()
