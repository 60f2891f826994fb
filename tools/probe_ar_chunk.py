"""How well the AR policy's greedy chunk imitates the expert from a fresh frame, with and without reasoning.

    python tools/probe_ar_chunk.py --checkpoint RUN --root DATA [--windows 128]

First step of held-out windows (the training split's validation episodes), the state given: the mean
|a_greedy - a_expert| (the dataset's ``expert_action`` where it has one, else the executed action) of the
chunk decoded after the model's greedy reasoning and after an empty one, beside a constant action's error.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmot.checkpoint import load_model
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.datasets.windows import WindowDataset, collate_windows, split_episodes
from worldmot.model import imagination
from worldmot.training.metrics import taught_actions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="trained run folder (or its model/ folder)")
    ap.add_argument("--root", required=True, help="the dataset it was trained on")
    ap.add_argument("--windows", type=int, default=128)
    ap.add_argument("--val-fraction", type=float, default=0.1, help="as the run's data.val_fraction")
    ap.add_argument("--seed", type=int, default=0, help="as the run's seed (which episodes were held out)")
    args = ap.parse_args()
    model = load_model(args.checkpoint).eval()
    reader = LeRobotDatasetReader(args.root)
    _, val = split_episodes(reader.num_episodes, args.val_fraction, args.seed)
    ds = WindowDataset(reader, n_steps=1, chunk=model.cfg.sequence.chunk, episodes=val, stride=4)
    pick = np.random.default_rng(0).choice(len(ds), min(args.windows, len(ds)), replace=False)
    w = collate_windows([ds[int(i)] for i in pick])
    true = taught_actions(w)[:, 0].float()  # (B, C, A)
    frames = model.tokenize_frames(w["frames"][:, 0].numpy())
    with torch.no_grad():
        for name, reason in (("after greedy reasoning", True), ("after an empty reasoning", False)):
            im = imagination.start(model, w["instruction"], frames, w["states"][:, 0].float(), horizon=1)
            actions, _ = imagination.write_step(im, None, reason=reason)
            print(f"greedy chunk {name}: {float((actions.float() - true).abs().mean()):.3f}")
    const = true.reshape(-1, true.shape[-1]).median(0).values
    print(f"a constant action: {float((const - true).abs().mean()):.3f}")


if __name__ == "__main__":
    main()
