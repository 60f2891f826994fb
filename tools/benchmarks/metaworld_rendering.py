"""BENCHMARKS.md rows "Meta-World: renders/s and recorded steps/s" and "Meta-World MT10: scripted and random
success" (needs the metaworld extra).

    python tools/benchmarks/metaworld_rendering.py [--image-size 64] [--seeds 20] [--record-episodes 10]

1. renders/s of the env's camera (FastCamera, free camera, Sawyer base hidden) on each MT10 task's scene;
2. recorded steps/s of ``worldmot record --env metaworld/MT10 --policy scripted`` (rendering, the expert label
   and video encoding included), one env;
3. success of Meta-World's scripted policies and of uniform random actions per MT10 task over ``--seeds``
   evaluation seeds (100000 + i), without rendering (pixels=False): a check of the wrapper.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np

import worldmot.envs  # noqa: F401  registers metaworld/*
from worldmot.envs.experts import expert_of
from worldmot.envs.metaworld_tasks import MT10


def renders_per_s(task: str, image_size: int, renders: int = 30) -> float:
    env = gym.make(f"metaworld/{task}", image_size=image_size)
    env.reset(seed=0)
    base = env.unwrapped
    base.camera.render(base.data)  # the GL context
    t0 = time.perf_counter()
    for _ in range(renders):
        base.camera.render(base.data)
    rate = renders / (time.perf_counter() - t0)
    env.close()
    return rate


def recorded_steps_per_s(image_size: int, episodes: int) -> tuple[float, int]:
    from worldmot.recording import record

    with tempfile.TemporaryDirectory() as out:
        result = record("metaworld/MT10", "scripted", episodes, f"{out}/ds", image_size=image_size, progress=False)
    return result.steps_per_s, result.steps


def success(task: str, policy: str, seeds: int) -> tuple[float, float]:
    """(success rate, mean decisions per episode) over ``seeds`` evaluation seeds, no rendering."""
    env = gym.make(f"metaworld/{task}", pixels=False)
    expert = expert_of(env)
    wins, lengths = [], []
    for i in range(seeds):
        obs, info = env.reset(seed=100_000 + i)
        env.action_space.seed(100_000 + i)
        done, steps, ok = False, 0, False
        while not done:
            if policy == "scripted":
                action = expert(obs["agent_pos"][None], obs["environment_state"][None], [info["instruction"]])[0][0]
            else:
                action = env.action_space.sample()
            obs, _, terminated, truncated, info = env.step(action)
            ok, steps, done = ok or info["is_success"], steps + 1, terminated or truncated
        wins.append(ok)
        lengths.append(steps)
    env.close()
    return float(np.mean(wins)), float(np.mean(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--record-episodes", type=int, default=10)
    args = parser.parse_args()
    rates = {task: renders_per_s(task, args.image_size) for task in MT10}
    print(f"renders/s at {args.image_size}x{args.image_size}: " + ", ".join(f"{t} {r:.0f}" for t, r in rates.items())
          + f"; mean {np.mean(list(rates.values())):.0f}", flush=True)
    rate, steps = recorded_steps_per_s(args.image_size, args.record_episodes)
    print(f"record metaworld/MT10 scripted, {args.record_episodes} episodes, one env: {steps} steps, {rate:.1f} steps/s",
          flush=True)
    print(f"| task | scripted success | decisions | random success |  ({args.seeds} seeds from 100000)")
    table = {}
    for task in MT10:
        table[task] = success(task, "scripted", args.seeds), success(task, "random", args.seeds)
        (s, n), (r, _) = table[task]
        print(f"| {task} | {100 * s:.0f}% | {n:.0f} | {100 * r:.0f}% |", flush=True)
    print(f"| mean | {100 * np.mean([v[0][0] for v in table.values()]):.1f}% | "
          f"{np.mean([v[0][1] for v in table.values()]):.0f} | {100 * np.mean([v[1][0] for v in table.values()]):.1f}% |")


if __name__ == "__main__":
    main()
