"""``worldmot eval``: run a policy for N seeded episodes in the simulator; write eval_info.json, videos, .rrd."""
from __future__ import annotations

import argparse
from pathlib import Path

POLICIES = ("random", "scripted", "model", "planner")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="Gymnasium id, e.g. worldmot/Reach-v0")
    parser.add_argument("--policy", required=True, choices=POLICIES)
    parser.add_argument("--checkpoint", help="trained run folder (or its model/ folder); needed by model and planner")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=100_000, help="episode i is reset with seed + i (unseen by "
                        "recordings, which start at 0)")
    parser.add_argument("--num-envs", type=int, default=10, help="episodes run side by side (one batched policy call)")
    parser.add_argument("--out", help="output folder (default: eval/<env>-<policy>)")
    parser.add_argument("--held-out-instructions", action="store_true", help="the wordings held out of recording")
    parser.add_argument("--videos", type=int, default=2, help="videos of the first N episodes")
    parser.add_argument("--no-rrd", action="store_true", help="skip the Rerun recording")
    parser.add_argument("--plan-config", default=str(Path(__file__).parent.parent / "configs" / "plan" / "default.yaml"),
                        help="planner settings (YAML)")
    parser.add_argument("overrides", nargs="*", help="planner settings as key=value, e.g. candidates=64 method=mppi")


def main(args: argparse.Namespace) -> int:
    import torch

    from worldmot.config import load_config
    from worldmot.errors import WorldmotError
    from worldmot.evaluation.outputs import write_eval_outputs
    from worldmot.evaluation.simulator import evaluate_in_simulator, make_eval_env
    from worldmot.planning import PlannerConfig
    from worldmot.policies import make_policy

    if args.episodes < 1 or args.num_envs < 1:
        raise WorldmotError(f"--episodes {args.episodes} --num-envs {args.num_envs}: expected positive numbers")
    if args.overrides and args.policy != "planner":
        raise WorldmotError(f"{' '.join(args.overrides)}: key=value settings are for --policy planner only")
    model, plan = None, None
    if args.policy in ("model", "planner"):
        if not args.checkpoint:
            raise WorldmotError(f"--policy {args.policy} needs --checkpoint RUN (a trained run folder)")
        from worldmot.checkpoint import load_model

        torch.set_num_threads(max(1, torch.get_num_threads()))
        model = load_model(args.checkpoint)
    if args.policy == "planner":
        plan = load_config(PlannerConfig, [args.plan_config], args.overrides)
    env = make_eval_env(args.env, min(args.num_envs, args.episodes), args.held_out_instructions,
                        image_size=model.cfg.sequence.image_size if model is not None else None)
    try:
        policy = make_policy(args.policy, env, model=model, plan=plan, seed=args.seed)
        result = evaluate_in_simulator(env, args.env, policy, args.policy, args.episodes, args.seed,
                                       goal_frame=plan is not None and plan.cost == "goal",
                                       held_out=args.held_out_instructions)
        fps = int(env.metadata.get("render_fps", 10) or 10)
    finally:
        env.close()
    out = Path(args.out or f"eval/{args.env.replace('/', '_')}-{args.policy}")
    extra = {"checkpoint": args.checkpoint, "seed": args.seed}
    if plan is not None:
        from dataclasses import asdict

        extra["plan"] = asdict(plan)
    info = write_eval_outputs(out, result, videos=args.videos, rrd=not args.no_rrd, fps=fps, extra=extra)
    agg = info["aggregated"]
    line = f"{args.env} {args.policy}: success {agg['pc_success']:.1f}% over {agg['n_episodes']} episodes, " \
           f"avg sum reward {agg['avg_sum_reward']:.2f}, {agg['eval_ep_s']:.2f} s/episode"
    if "plan_s_median" in agg:
        line += f", {agg['plan_s_median']:.3f} s per replan (median)"
    print(f"{line}\n{out / 'eval_info.json'}")
    return 0
