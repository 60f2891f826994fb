"""Does the model's predicted progress (the planner's language-only cost) read the frame and the instruction?

On unseen Reach scenes (seeds 100000+, the effector moved a random number of random steps from its start),
the model reads the frame, the state and the instruction, and its expected progress is compared with the
true progress toward the named target. The same frame is then read with the instruction's colour replaced
by each other target's colour: a model that grounds the instruction predicts the progress toward the
target it is told about, so its prediction must move with the colour.

    python tools/probe_progress.py --checkpoint RUN [--scenes 60]

Prints: the spread of the predictions, their Pearson correlation with the true progress (named target,
and over all colour/target pairs), the mean change when only the colour changes, and the error beside a
constant (the median true progress).
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch
import worldmot.envs  # registers the Gymnasium ids (and binds worldmot, for worldmot.load)
from tqdm import tqdm
from worldmot.envs.instructions import parse_colours

from worldmot.model import imagination


@torch.no_grad()
def predicted_progress(model, instructions: list[str], frame: np.ndarray, state: np.ndarray) -> np.ndarray:
    """One frame (S, S, 3) and state read under each instruction -> (len(instructions),) expected progress."""
    n = len(instructions)
    tokens = model.tokenize_frames(np.repeat(frame[None], n, 0))
    states = torch.as_tensor(np.repeat(state[None], n, 0), dtype=torch.float32)
    return imagination.start(model, instructions, tokens, states, horizon=1).progress().cpu().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a run folder or model folder trained on Reach")
    p.add_argument("--scenes", type=int, default=60)
    p.add_argument("--max-moves", type=int, default=15, help="random steps taken before a scene is read")
    p.add_argument("--seed", type=int, default=100000)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    model = worldmot.load(args.checkpoint)
    model.eval()
    env = gym.make("worldmot/Reach-v0")
    reach = env.unwrapped
    rng = np.random.default_rng(args.seed)
    pred, true = [], []  # (scenes, 3): named target first, then the other two
    for i in tqdm(range(args.scenes), desc="scenes"):
        obs, info = env.reset(seed=args.seed + i)
        for _ in range(int(rng.integers(0, args.max_moves + 1))):
            obs, *_ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        named = parse_colours(info["instruction"])[0]
        order = [reach.named] + [t for t in range(len(reach.colours)) if t != reach.named]
        texts = [info["instruction"].replace(named, reach.colours[t]) for t in order]
        pred.append(predicted_progress(model, texts, obs["pixels"]["top"], obs["agent_pos"]))
        true.append([reach.progress_toward(t)[0] for t in order])
    env.close()
    pred, true = np.asarray(pred), np.asarray(true)
    result = {
        "scenes": args.scenes,
        "pred_std": float(pred[:, 0].std()),
        "corr_named": float(np.corrcoef(pred[:, 0], true[:, 0])[0, 1]),
        "corr_all_pairs": float(np.corrcoef(pred.ravel(), true.ravel())[0, 1]),
        "colour_change_effect": float(np.abs(pred[:, :1] - pred[:, 1:]).mean()),
        "true_change": float(np.abs(true[:, :1] - true[:, 1:]).mean()),
        "mae": float(np.abs(pred[:, 0] - true[:, 0]).mean()),
        "mae_const": float(np.abs(np.median(true[:, 0]) - true[:, 0]).mean()),
    }
    print(f"predicted progress: std {result['pred_std']:.3f} over scenes")
    print(f"Pearson r with the true progress: {result['corr_named']:.3f} (named target), "
          f"{result['corr_all_pairs']:.3f} (every colour/target pair)")
    print(f"mean change when only the colour changes: {result['colour_change_effect']:.4f} "
          f"(true progress changes by {result['true_change']:.3f})")
    print(f"error {result['mae']:.3f} vs a constant {result['mae_const']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
