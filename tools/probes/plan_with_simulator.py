"""The planner's settings with a perfect world model: CEM on Reacher-v5 where every candidate chunk is rolled
out in a copy of the simulator. Separates what the optimiser and the cost can do from what the model adds.

    python tools/probes/plan_with_simulator.py --episodes 30 --horizon 1             # one chunk ahead, position cost
    python tools/probes/plan_with_simulator.py --episodes 30 --horizon 1 --lead 2    # plus where the tip coasts to
    python tools/probes/plan_with_simulator.py --episodes 30 --horizon 1 --blind     # a model that ignores velocity

CEM as configs/plan/objects.yaml sets it (32 candidates, 2 iterations, 6 elites, constant chunks of 2
actions, initial std 0.7, warm start); the cost per imagined chunk is the fingertip's distance to the target
(plus, with --lead, object_cost.lead_distance), mean over the horizon plus the last, as the planner's.
"""
from __future__ import annotations

import argparse

import worldmot.envs  # noqa: F401  registers the envs; first, so that mujoco loads with its EGL default
import gymnasium as gym
import mujoco
import numpy as np
import torch

from worldmot.planning.object_cost import lead_distance


def chunk_costs(env, sim: mujoco.MjData, qpos, qvel, actions: np.ndarray, lead: float, chunk: int) -> float:
    """actions (H, A), one per chunk, from the state (qpos, qvel) -> the planner's cost of the sequence."""
    sim.qpos[:], sim.qvel[:] = qpos, qvel
    mujoco.mj_kinematics(env.model, sim)
    target, tip = env.data.body("target").xpos[:2].copy(), sim.body("fingertip").xpos[:2].copy()
    costs = []
    for action in actions:
        before = tip
        sim.ctrl[:] = action
        for _ in range(chunk * env.inner.frame_skip):
            mujoco.mj_step(env.model, sim)
        mujoco.mj_kinematics(env.model, sim)  # mj_step leaves the positions of before its last integration
        tip = sim.body("fingertip").xpos[:2].copy()
        cost = np.linalg.norm(tip - target)
        if lead:
            cost += float(lead_distance(*(torch.tensor(x)[None] for x in (tip, before, target)), lead)[0])
        costs.append(cost)
    return float(np.mean(costs) + costs[-1])


def episode(seed: int, horizon: int, lead: float, blind: bool, chunk: int = 2, candidates=32, iterations=2,
            elites=6) -> bool:
    env = gym.make("worldmot/Reacher-v5").unwrapped
    env.reset(seed=seed)
    sim, rng = mujoco.MjData(env.model), np.random.default_rng(seed)
    mean = np.zeros((horizon, 2))
    for _ in range(gym.spec("worldmot/Reacher-v5").max_episode_steps // chunk):
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy() * (0.0 if blind else 1.0)
        std = np.full_like(mean, 0.7)
        for _ in range(iterations):
            params = np.clip(mean + std * rng.standard_normal((candidates, *mean.shape)), -1, 1)
            params[0] = mean
            cost = np.array([chunk_costs(env, sim, qpos, qvel, p, lead, chunk) for p in params])
            chosen = params[np.argsort(cost)[:elites]]
            mean, std = chosen.mean(0), np.maximum(chosen.std(0), 0.05)
        for _ in range(chunk):
            if env.step(mean[0])[2]:
                return True
        mean = np.concatenate([mean[1:], mean[-1:]])
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=1, help="chunks imagined per candidate")
    parser.add_argument("--lead", type=float, default=0.0, help="plan.lead_chunks (0: off)")
    parser.add_argument("--chunk", type=int, default=2, help="env actions per chunk (the model's sequence.chunk)")
    parser.add_argument("--blind", action="store_true", help="candidates start at rest: a model blind to velocity")
    args = parser.parse_args()
    wins = sum(episode(args.seed + i, args.horizon, args.lead, args.blind, args.chunk) for i in range(args.episodes))
    print(f"chunk {args.chunk} horizon {args.horizon} lead {args.lead} blind {args.blind}: {wins}/{args.episodes} reached the target")


if __name__ == "__main__":
    main()
