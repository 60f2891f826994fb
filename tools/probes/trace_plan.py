"""Trace planner episodes step by step: where the simulator has each keypoint, where the model places it on
the real frame and on the goal image, and the progress. How the Push and Reacher-v5 failures in
docs/notes were found.

    python tools/probes/trace_plan.py --checkpoint RUN --env worldmot/Push-v0 --plan-config configs/plan/push.yaml 100003
    python tools/probes/trace_plan.py --checkpoint RUN --env worldmot/Reacher-v5 --by-root 300   # read-out vs distance from the root
    python tools/probes/trace_plan.py --checkpoint RUN --env worldmot/Reacher-v5 --goal-images 50  # placement on goal images
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import worldmot.envs  # registers the envs with Gymnasium
from worldmot.policies.planner import PlannerPolicy

import worldmot
from worldmot.config import config_dir, load_config
from worldmot.planning import PlannerConfig

from keypoints import pixel_error, placed  # the probe beside this one


def _uv(point: np.ndarray) -> str:
    return f"({point[0]:.1f}, {point[1]:.1f})"


def trace(model, env, cfg: PlannerConfig, seed: int, every: int) -> None:
    """One planner episode; a line every ``every`` steps, positions in pixels."""
    size = model.cfg.sequence.image_size
    policy = PlannerPolicy(model, cfg, env.action_space.low, env.action_space.high)
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    goal = env.unwrapped.render_goal()
    on_goal = placed(model, [info["instruction"]], goal[None], obs["agent_pos"][None])[0] * size
    print(f"seed {seed}: {info['instruction']!r}; placed on the goal image {' '.join(map(_uv, on_goal))}")
    t, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act({**obs, "task": info["instruction"], "goal": goal}))
        t, done = t + 1, terminated or truncated
        if t % every and not done:
            continue
        true = obs["keypoints"].reshape(-1, 2) * size
        read = placed(model, [info["instruction"]], obs["pixels"]["top"][None], obs["agent_pos"][None])[0] * size
        points = " | ".join(f"{_uv(tr)} read {_uv(rd)} ({np.linalg.norm(rd - tr):.1f})" for tr, rd in zip(true, read))
        print(f"  t={t:3d} progress {reward:.2f}  {points}")


def by_root(model, env, scenes: int) -> None:
    """The effector's read-out error against its distance from the image centre (Reacher-v5: the arm's root),
    on fresh scenes after 0-29 random actions (seeds 300000+)."""
    size, rng, rows = model.cfg.sequence.image_size, np.random.default_rng(0), []
    for i in range(scenes):
        obs, info = env.reset(seed=300_000 + i)
        for _ in range(int(rng.integers(0, 30))):
            obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        error = pixel_error(model, obs, info["instruction"], size)  # (K,): the first keypoint .. the effector
        effector = obs["keypoints"].reshape(-1, 2)[-1] * size
        rows.append((np.linalg.norm(effector - size / 2), error[-1], error[0]))
    r = np.array(rows)
    for lo, hi in [(0, 8), (8, 12), (12, 16), (16, np.inf)]:
        m = (r[:, 0] >= lo) & (r[:, 0] < hi)
        if m.any():
            print(f"effector {lo}-{hi} px from the centre: {m.sum():3d} scenes, effector error median "
                  f"{np.median(r[m, 1]):.2f} px (> 3 px: {np.mean(r[m, 1] > 3):.0%}), first keypoint {np.median(r[m, 2]):.2f} px")


def on_goal_images(model, env, episodes: int) -> None:
    """Where the model places the first named object and the effector on the goal image against where the
    target is (seeds 100000+, as `worldmot eval`): on Reacher-v5's goal image the fingertip covers the target."""
    size, effector, first = model.cfg.sequence.image_size, [], []
    for i in range(episodes):
        obs, info = env.reset(seed=100_000 + i)
        read = placed(model, [info["instruction"]], env.unwrapped.render_goal()[None], obs["agent_pos"][None])[0] * size
        target = obs["keypoints"].reshape(-1, 2)[0] * size
        effector.append(np.linalg.norm(read[-1] - target)), first.append(np.linalg.norm(read[0] - target))
    effector = np.array(effector)
    print(f"goal images: the effector placed {np.median(effector):.2f} px from the target (median; > 2 px in "
          f"{np.sum(effector > 2)}/{episodes}), the target {np.median(first):.2f} px")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", default="worldmot/Reacher-v5")
    p.add_argument("--plan-config", default=str(config_dir() / "plan" / "objects.yaml"))
    p.add_argument("--every", type=int, default=2, help="print every N steps")
    p.add_argument("--by-root", type=int, default=0, metavar="SCENES", help="read-out error by distance from the centre")
    p.add_argument("--goal-images", type=int, default=0, metavar="EPISODES",
                   help="placement on the goal images against the target")
    p.add_argument("seeds", nargs="*", type=int)
    args = p.parse_args()
    model, env = worldmot.load(args.checkpoint), gym.make(args.env)
    if args.by_root:
        by_root(model, env, args.by_root)
    if args.goal_images:
        on_goal_images(model, env, args.goal_images)
    cfg = load_config(PlannerConfig, [args.plan_config])
    for seed in args.seeds:
        trace(model, env, cfg, seed, args.every)


if __name__ == "__main__":
    main()
