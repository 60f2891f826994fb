"""How well does the model judge success from a goal image? Picks the tolerance of ``--judge goal``.

``worldmot eval --in-model`` (judge "goal") counts an imagined frame as the goal reached when the state the model
reads off it (WorldModel.read_state) is within a tolerance of the state it reads off the episode's goal image.
This tool runs the scripted expert and the random policy in the simulator (unseen seeds), reads the state off
every true frame and off the goal image, and reports, for each tolerance, how often an episode's judged
success (any frame within the tolerance) agrees with its true success. True frames measure the read-out
alone; inside the model the frames are imagined as well.

The tolerance that judges most episodes right is kept with the model by ``--write`` (MODEL/goal_judge.json)
and is then ``worldmot eval --in-model``'s default for that model (a new export of the weights drops it).

    python tools/probes/calibrate_goal_judge.py --checkpoint RUN [--env worldmot/Reach-v0] [--episodes 30] [--write]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm
from worldmot.checkpoint import load_model, write_goal_tolerance
from worldmot.stepping import collect_episodes
from worldmot.envs.make import make_env
from worldmot.model import imagination
from worldmot.policies import make_policy


@torch.no_grad()
def distances_to_goal(model, instruction: str, frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) frames and the (H, W, 3) goal image -> (T,) distances of their read-out states, as the
    judge measures them (normalised, each dimension weighted by its read-out R^2)."""
    images = np.concatenate([goal[None], frames])
    state = imagination.start(model, [instruction] * len(images), model.tokenize_frames(images)).state
    return model.state_distance(state[1:], state[:1]).numpy()


def judged_right(rows: list[tuple], tolerance: float) -> float:
    """The share of episodes whose judged success (any frame within ``tolerance``) is their true success.
    rows: (policy, true success, min distance, ...)."""
    return float(np.mean([(r[2] < tolerance) == r[1] for r in rows]))


def best_tolerance(rows: list[tuple], tolerances: list[float]) -> tuple[float, float]:
    """(tolerance, share of episodes judged right) of the candidate judging most episodes right; among equals the
    middle one (the widest margin either side)."""
    right = [judged_right(rows, tol) for tol in tolerances]
    best = [tol for tol, share in zip(tolerances, right) if share == max(right)]
    return best[(len(best) - 1) // 2], max(right)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="trained run folder (or its model/ folder)")
    p.add_argument("--env", default="worldmot/Reach-v0")
    p.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE", help="as worldmot eval's")
    p.add_argument("--episodes", type=int, default=30, help="per policy")
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--seed", type=int, default=200_000, help="first seed (default: seeds no evaluation uses)")
    p.add_argument("--tolerances", type=float, nargs="+",
                   default=[0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0])
    p.add_argument("--write", action="store_true", help="keep the best tolerance with the model (goal_judge.json), "
                   "the default of worldmot eval --in-model --judge goal")
    args = p.parse_args()
    model = load_model(args.checkpoint).eval()
    env = make_env(args.env, min(args.num_envs, args.episodes), "sync", image_size=model.cfg.sequence.image_size,
                   spec_overrides=args.env_set)
    rows = []  # (policy, true success, min distance, distance at the first success or nan)
    for name in ("scripted", "random"):
        policy = make_policy(name, env, seed=args.seed)
        for start in tqdm(range(args.seed, args.seed + args.episodes, env.num_envs), desc=name, unit="batch"):
            for ep in collect_episodes(env, policy, seed=start, goal_frame=True):
                after = np.concatenate([ep.frames[1:], ep.final_frame[None]])  # the frame after each action
                d = distances_to_goal(model, ep.instruction, after, ep.goal_frame)
                at = d[np.argmax(ep.successes)] if ep.success else np.nan
                rows.append((name, ep.success, float(d.min()), float(at)))
    env.close()
    at_success = np.array([r[3] for r in rows if r[1]])
    if len(at_success):
        print(f"read-out distance to the goal at the first true success: median {np.median(at_success):.3f}, "
              f"90th percentile {np.percentile(at_success, 90):.3f} ({len(at_success)} episodes)")
    print("| tolerance | episodes judged right | scripted judged successful | random judged successful |")
    print("|---|---|---|---|")
    for tol in args.tolerances:
        right = judged_right(rows, tol)
        rate = {n: np.mean([r[2] < tol for r in rows if r[0] == n]) for n in ("scripted", "random")}
        print(f"| {tol} | {right:.0%} | {rate['scripted']:.0%} | {rate['random']:.0%} |")
    truth = {n: float(np.mean([r[1] for r in rows if r[0] == n])) for n in ("scripted", "random")}
    print(f"true success: scripted {truth['scripted']:.0%}, random {truth['random']:.0%}")
    tolerance, right = best_tolerance(rows, args.tolerances)
    print(f"best tolerance {tolerance} ({right:.0%} of {len(rows)} episodes judged right)")
    if args.write:
        calibration = {"tolerance": tolerance, "judged_right": right, "episodes": len(rows), "env": args.env,
                       "env_set": args.env_set, "seed": args.seed, "true_success": truth}
        print(write_goal_tolerance(args.checkpoint, calibration))


if __name__ == "__main__":
    main()
