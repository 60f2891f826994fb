"""``worldmot record``: run a policy's episodes in a Gymnasium env and write them as a LeRobot v3.0 dataset."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", "--env-config", dest="env", required=True, help="the env: a worldmot task "
                        "(worldmot/Reach-v0), a spec (a name in configs/env/ or a YAML file; --env-config FILE says the "
                        "same), a Gymnasium id (Reacher-v5) or module:Id")
    parser.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE", help="a field of a "
                        "spec-driven env's spec, e.g. --env-set image_size=32 --env-set frame_skip=2, or a setting of "
                        "a built-in task, e.g. --env-set task_set_seed=1 for metaworld/* (repeatable)")
    parser.add_argument("--policy", default="scripted", help="policy name (scripted, random, ...)")
    parser.add_argument("--episodes", type=int, required=True, help="episodes the dataset should hold in total")
    parser.add_argument("--out", required=True, help="dataset folder (new, or existing with --resume)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument("--num-envs", type=int, default=1, help="parallel env workers (async vector env)")
    parser.add_argument("--resume", action="store_true", help="append to an existing dataset")
    parser.add_argument("--image-size", type=int, default=64, help="camera height and width")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="scripted policy: std of temporally correlated noise added to the expert's actions "
                        "(e.g. 0.5; data for a world model that a planner can steer)")
    parser.add_argument("--noise-duty", type=float, default=1.0,
                        help="with --action-noise: the fraction of steps with noise, in bursts (clean stretches "
                        "keep the expert's actions sharp for the AR policy)")
    parser.add_argument("--codec", default="libx264", help="video encoder: libx264 (default, faster) or libsvtav1 "
                        "(LeRobot's default, smaller files)")


def main(args: argparse.Namespace) -> int:
    from worldmot.recording import record

    res = record(args.env, args.policy, args.episodes, args.out, seed=args.seed, num_envs=args.num_envs,
                 resume=args.resume, image_size=args.image_size, codec=args.codec,
                 policy_kwargs={"action_noise": args.action_noise, "noise_duty": args.noise_duty}
                 if args.action_noise else None, spec_overrides=args.env_set)
    print(f"{res.root}: {res.total_episodes} episodes ({res.episodes} new, {res.steps} steps, "
          f"{res.steps_per_s:.0f} steps/s)")
    return 0
