"""``worldmot eval``: run a policy for N seeded episodes in the simulator (or in the model, from the simulator's
starts or a dataset's episodes); write eval_info.json, videos, .rrd."""
from __future__ import annotations

import argparse
from pathlib import Path

POLICIES = ("random", "scripted", "model", "planner")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", "--env-config", dest="env", help="the env: a worldmot task "
                        "(worldmot/Reach-v0), a spec (a name in configs/env/ or a YAML file; --env-config FILE says the "
                        "same), a Gymnasium id (Reacher-v5) or module:Id")
    parser.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE", help="a field of a "
                        "spec-driven env's spec, e.g. --env-set image_size=32 --env-set frame_skip=2, or a setting of "
                        "a built-in task, e.g. --env-set task_set_seed=1 for metaworld/* (repeatable)")
    parser.add_argument("--dataset", help="instead of --env, with --in-model: start from the episodes of this LeRobot "
                        "dataset (a folder or a Hub id): their first frames, states and tasks; the goal is each "
                        "episode's last frame; episode i is the dataset's (--seed + i) mod its episodes")
    parser.add_argument("--policy", required=True, choices=POLICIES)
    parser.add_argument("--checkpoint", help="trained run folder (or its model/ folder); needed by model and planner")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, help="episode i is reset with seed + i (default 100000: unseen by "
                        "recordings, which start at 0; with --dataset, default 0: the dataset's first episode)")
    parser.add_argument("--num-envs", type=int, default=10, help="episodes run side by side (one batched policy call)")
    parser.add_argument("--out", help="output folder (default: eval/<env>-<policy>)")
    parser.add_argument("--held-out-instructions", action="store_true", help="the wordings held out of recording")
    parser.add_argument("--videos", type=int, default=2, help="videos of the first N episodes")
    parser.add_argument("--in-model", action="store_true", help="run the episodes inside the world model of "
                        "--checkpoint (imagined frames, success judged by the model) instead of the simulator")
    parser.add_argument("--judge", choices=("goal", "token"), default="goal", help="--in-model: success when the "
                        "state the model reads off its imagined frame comes near the state it reads off the goal image "
                        "(goal), or when its <success> token passes 0.5 (token)")
    parser.add_argument("--goal-tolerance", type=float, help="--judge goal: the read-out distance that counts as "
                        "the goal reached (default: the model's calibrated one, MODEL/goal_judge.json, else 0.3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs "
                        "(auto: CUDA where available; planning on CUDA uses bf16 autocast)")
    parser.add_argument("--reason", action="store_true", help="--policy model: write its reasoning before each "
                        "chunk's actions (off: the actions follow an empty reasoning, as the planner's proposals do)")
    parser.add_argument("--transfer", action="store_true", help="evaluate a model on an env (or features) other than "
                        "the ones it was trained on, on purpose")
    parser.add_argument("--no-rrd", action="store_true", help="skip the Rerun recording")
    parser.add_argument("--plan", "--plan-config", dest="plan", default="default", help="planner settings: a name "
                        "of the built-in configs/plan/ (default, objects, push, reacher) or a YAML file")
    parser.add_argument("overrides", nargs="*", help="planner settings as key=value, e.g. candidates=64 method=mppi")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = planner_keys()


def planner_keys() -> str:
    """Every planner key with its value in the default plan config and its meaning."""
    from worldmot.config import merge_config, named_config
    from worldmot.config_reference import reference_text
    from worldmot.planning import PlannerConfig

    conf = merge_config(PlannerConfig, [named_config("plan", "default")])
    return "planner keys (--policy planner; key=value after the options; --plan picks the file):\n" + \
        reference_text(PlannerConfig, conf)


def main(args: argparse.Namespace) -> int:
    from worldmot.config import load_config
    from worldmot.errors import WorldmotError
    from worldmot.evaluation.run import evaluate, summary_line
    from worldmot.planning import PlannerConfig

    if (args.env is None) == (args.dataset is None):
        raise WorldmotError("expected --env ENV (the simulator) or --dataset DATASET (its episodes, --in-model)")
    if args.seed is None:
        args.seed = 0 if args.dataset else 100_000
    if args.episodes < 1 or args.num_envs < 1:
        raise WorldmotError(f"--episodes {args.episodes} --num-envs {args.num_envs}: expected positive numbers")
    if args.videos < 0:
        raise WorldmotError(f"--videos {args.videos}: expected a count >= 0")
    if args.goal_tolerance is not None and not (args.in_model and args.judge == "goal" and args.goal_tolerance > 0):
        raise WorldmotError(f"--goal-tolerance {args.goal_tolerance}: expected a positive distance, with --in-model "
                            f"and --judge goal")
    if args.reason and args.policy != "model":
        raise WorldmotError(f"--reason: for --policy model only (got --policy {args.policy})")
    if args.overrides and args.policy != "planner":
        raise WorldmotError(f"{' '.join(args.overrides)}: key=value settings are for --policy planner only")
    model, plan = None, None
    if args.policy == "planner":
        from worldmot.config import named_config

        plan = load_config(PlannerConfig, [named_config("plan", args.plan)], args.overrides)
    if args.policy in ("model", "planner") or args.in_model:
        if not args.checkpoint:
            needs = "--in-model" if args.in_model else f"--policy {args.policy}"
            raise WorldmotError(f"{needs} needs --checkpoint RUN (a trained run folder)")
        from worldmot.checkpoint import load_model
        from worldmot.devices import wants_cuda

        model = load_model(args.checkpoint, device="cuda" if wants_cuda(args.device, "--device ") else "cpu")
    name = f"dataset/{Path(args.dataset.split('@')[0]).name}" if args.dataset else args.env
    out = Path(args.out or f"eval/{name.replace('/', '_')}-{args.policy}{'-in-model' if args.in_model else ''}")
    info = evaluate(name, args.policy, out, model=model, plan=plan, episodes=args.episodes, seed=args.seed,
                    num_envs=args.num_envs, held_out=args.held_out_instructions, videos=args.videos,
                    rrd=not args.no_rrd, extra={"checkpoint": args.checkpoint}, in_model=args.in_model,
                    judge=args.judge, reason=args.reason, transfer=args.transfer, spec_overrides=args.env_set,
                    dataset=args.dataset, goal_tolerance=args.goal_tolerance)
    print(f"{summary_line(info)}\n{out / 'eval_info.json'}")
    return 0
