"""Steps per second (physics + 64x64 render) of each registered task, single env, random actions.

    python tools/bench_envs.py [--steps 500] [--image-size 64]
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym

import worldmot.envs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    for env_id in worldmot.envs.TASK_IDS:
        env = gym.make(env_id, image_size=args.image_size)
        env.reset(seed=0)
        env.action_space.seed(0)
        start = time.perf_counter()
        for _ in range(args.steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        rate = args.steps / (time.perf_counter() - start)
        print(f"{env_id:24s} {rate:7.0f} steps/s  ({args.image_size}x{args.image_size}, step + render)")
        env.close()


if __name__ == "__main__":
    main()
