"""``worldmot demo``: the main job on the built-in default (Reach, tiny model, CPU), cached stage by stage."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="worldmot-demo", help="the demo's folder (default: ./worldmot-demo)")
    parser.add_argument("--fresh", action="store_true", help="delete the folder first and start over")
    parser.add_argument("--env", "--env-config", dest="env", default="worldmot/Reach-v0", help="an env with a "
                        "scripted expert: a worldmot task, a spec (a name in configs/env/ or a YAML file) or a Gymnasium id")
    parser.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE", help="a field of a "
                        "spec-driven env's spec, e.g. --env-set image_size=32 --env-set frame_skip=2, or a setting of "
                        "a built-in task, e.g. --env-set task_set_seed=1 for metaworld/* (repeatable)")
    parser.add_argument("--episodes", type=int, default=400, help="episodes to record")
    parser.add_argument("--eval-episodes", type=int, default=50, help="episodes per policy (random, scripted, model)")
    parser.add_argument("--planner-episodes", type=int, default=10, help="episodes of the planner (the slow one)")
    parser.add_argument("--plan", default="", help="planner settings: a name in configs/plan/ or a YAML file "
                        "(default: push for worldmot/Push-v0, else objects)")
    parser.add_argument("overrides", nargs="*", help="training settings as key=value, e.g. steps=300")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from worldmot.demo import DemoConfig, run_demo
    from worldmot.errors import WorldmotError

    if min(args.episodes, args.eval_episodes, args.planner_episodes) < 1:
        raise WorldmotError("--episodes, --eval-episodes and --planner-episodes: expected positive numbers")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise WorldmotError(f"{bad[0]!r}: expected a training setting key=value")
    cfg = DemoConfig(env=args.env, episodes=args.episodes, eval_episodes=args.eval_episodes,
                     planner_episodes=args.planner_episodes, plan=args.plan, train_overrides=list(args.overrides),
                     env_overrides=list(args.env_set))
    report = run_demo(cfg, Path(args.out), fresh=args.fresh)
    text = report.read_text()
    table = text[text.index("| policy"): text.index("![success]")].strip()
    print(f"\n{table}\n\nreport: {report}\nopen the recording: rerun {report.parent / 'demo.rrd'}")
    return 0
