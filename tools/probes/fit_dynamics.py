"""How well the effector's move over one chunk can be fitted from the state and the chunk as plain numbers:
the yardstick for the model's keypoints-ahead head (worldmot/model/object_heads.py).

    python tools/probes/fit_dynamics.py --root R --chunk 2 --steps 1200

From a recording with observation.state, action and observation.keypoints (the effector last): for every
window of ``chunk`` steps inside an episode, the normalised state before it and its actions -> the change of
the effector's image (u, v). Fits the ahead head's MLP shape (two hidden layers, AdamW, one-cycle schedule,
batches of 48) on 90% of the windows and reports the held-out error in pixels (median and mean) beside
standing still. No trunk, no frames: what the head can reach when its inputs are used directly.
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn


def windows(root: Path, chunk: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (M, Ds + chunk * A), effector moves (M, 2) in pixels) of every chunk inside an episode."""
    files = sorted(glob.glob(str(root / "data" / "*" / "*.parquet")))
    if not files:
        raise SystemExit(f"{root}: no data/*/*.parquet files (expected a LeRobot v3.0 recording)")
    table = pa.concat_tables([pq.read_table(f, columns=["observation.state", "action", "observation.keypoints",
                                                         "episode_index"]) for f in files]).to_pydict()
    state, action, keypoints, episode = (np.asarray(table[k], dtype=np.float32) for k in
                                         ("observation.state", "action", "observation.keypoints", "episode_index"))
    same = episode[:-chunk] == episode[chunk:]
    state = (state - state.mean(0)) / (state.std(0) + 1e-6)
    acts = np.concatenate([action[i: len(action) - chunk + i] for i in range(chunk)], 1)
    x = np.concatenate([state[:-chunk], acts], 1)[same]
    y = (keypoints[chunk:, -2:] - keypoints[:-chunk, -2:])[same] * image_size
    return torch.from_numpy(x), torch.from_numpy(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--chunk", type=int, default=2, help="the model's sequence.chunk")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--width", type=int, default=256, help="model.ahead_width")
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = windows(args.root, args.chunk, args.image_size)
    order = torch.randperm(len(x))
    train, held = order[: int(0.9 * len(x))], order[int(0.9 * len(x)):]
    net = nn.Sequential(nn.Linear(x.shape[1], args.width), nn.SiLU(), nn.Linear(args.width, args.width), nn.SiLU(),
                        nn.Linear(args.width, 2))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps, pct_start=0.05)
    for _ in range(args.steps):
        batch = train[torch.randint(len(train), (48,))]
        loss = ((net(x[batch]) - y[batch] / args.image_size) ** 2).sum(-1).mean() * 100
        opt.zero_grad(), loss.backward(), opt.step(), schedule.step()
    with torch.no_grad():
        err = (net(x[held]) * args.image_size - y[held]).norm(dim=-1)
    still = y[held].norm(dim=-1)
    print(f"{len(x)} windows of {args.chunk} steps; held-out effector move error {err.median():.2f} px median, "
          f"{err.mean():.2f} mean (standing still: {still.median():.2f} px median)")


if __name__ == "__main__":
    main()
