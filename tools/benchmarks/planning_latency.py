"""Planning latency: seconds per replanning step of the planner with a world model, per batch of envs.

Timing depends on shapes, not on training, so a freshly initialised model of the config stands in when no
--checkpoint is given. Median of --repeats after one warm-up.

    python tools/benchmarks/planning_latency.py [--checkpoint RUN] [--envs 1] [--repeats 7] [--device cpu|cuda] [--plan default] [--compile] [key=value planner settings]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from harness import print_profile

from worldmot.config import ModelConfig, load_config
from worldmot.model.world_model import WorldModel
from worldmot.planning import Planner, PlannerConfig
from worldmot.tokenizers.actions import ActionTokenizer


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_or_build(checkpoint: str | None, model: str, device: str, keypoints: int) -> WorldModel:
    if checkpoint:
        from worldmot.checkpoint import load_model

        return load_model(checkpoint, device)
    cfg = load_config(ModelConfig, [CONFIGS / "model" / f"{model}.yaml"], [f"sequence.keypoints={keypoints}"])
    A = cfg.sequence.action_dim
    return WorldModel(cfg, ActionTokenizer(-np.ones(A), np.ones(A), cfg.sequence.action_bins)).to(device).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--model", default="tiny")
    p.add_argument("--envs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast)")
    p.add_argument("--plan", default="default", help="a planner config in configs/plan/")
    p.add_argument("--keypoints", type=int, default=0, help="a fresh model's keypoints (the objects plan needs them)")
    p.add_argument("--profile", action="store_true", help="also print the ops that take the most time")
    p.add_argument("--compile", action="store_true", help="torch.compile the trunk's blocks (MoTTrunk.compile)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_or_build(args.checkpoint, args.model, args.device, args.keypoints)
    if args.compile:
        model.trunk.compile("blocks", dynamic=True)
    plan = load_config(PlannerConfig, [CONFIGS / "plan" / f"{args.plan}.yaml"], args.overrides)
    seq = model.cfg.sequence
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.envs, seq.image_size, seq.image_size, 3), dtype=np.uint8)
    states = rng.uniform(-1, 1, (args.envs, seq.state_dim)).astype(np.float32)
    goals = rng.integers(0, 256, frames.shape, dtype=np.uint8) if plan.cost == "goal" else None
    tasks = ["reach the red target"] * args.envs
    planner = Planner(model, plan, -np.ones(seq.action_dim), np.ones(seq.action_dim))
    times = []
    for r in range(args.repeats + 1):  # the first one warms up
        planner.reset()
        t0 = time.perf_counter()
        planner.plan(tasks, frames, states, goals)
        times.append(time.perf_counter() - t0)
    if args.profile:
        print_profile(lambda: planner.plan(tasks, frames, states, goals), args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}; model {model.cfg.name}, "
          f"{args.envs} env(s); plan {plan.method} {plan.candidates} candidates x {plan.iterations} iterations, "
          f"horizon {plan.horizon} chunks of {seq.chunk}, {plan.flow_steps} flow step(s), cost {plan.cost}")
    med = statistics.median(times[1:])
    print(f"  {med:.3f} s per replanning step (median of {args.repeats}), {med / args.envs:.3f} s per env")


if __name__ == "__main__":
    main()
