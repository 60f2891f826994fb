"""Window loading throughput: samples/s through a DataLoader (n_steps=3, chunk=4 windows by default).

    python tools/benchmarks/loader_speed.py [--dataset DIR] [--workers 0 2] [--batches 30]

Without --dataset, records a small Push dataset first (scripted policy, 64x64, --codec).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from worldmot.recording import record
from worldmot.datasets.windows import WindowDataset, collate_windows


def run(ds: WindowDataset, workers: int, batch_size: int, batches: int) -> float:
    sampler = RandomSampler(ds, replacement=True, num_samples=(batches + 1) * batch_size,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_windows)
    it = iter(loader)
    next(it)  # worker start-up is not loading
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(it)["instruction"])
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--n-steps", type=int, default=3)
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--codec", default="libx264")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = args.dataset
    if root is None:
        root = Path(tempfile.mkdtemp()) / "push"
        record("worldmot/Push-v0", "scripted", 20, root, codec=args.codec, progress=False)
    ds = WindowDataset(root, n_steps=args.n_steps, chunk=args.chunk)
    print(f"dataset {root}: {ds.reader.num_episodes} episodes, {len(ds)} windows, codec "
          f"{ds.reader.features[ds.camera].get('info', {}).get('video.codec')}")
    print(f"| workers | batch | samples/s (median of {args.repeats}) | runs |")
    print("|---|---|---|---|")
    for w in args.workers:
        runs = [run(ds, w, args.batch_size, args.batches) for _ in range(args.repeats)]
        print(f"| {w} | {args.batch_size} | {statistics.median(runs):.0f} | {', '.join(f'{r:.0f}' for r in runs)} |",
              flush=True)


if __name__ == "__main__":
    main()
