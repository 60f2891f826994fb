"""Cost of Rerun logging in an evaluation loop: the scripted policy on worldmot/Reach-v0, with and without
a EpisodeRecorder logging every step.

    python tools/benchmarks/rerun_logging.py [--episodes 10] [--repeats 5] [--image-size 64] [--planner]
    python tools/benchmarks/rerun_logging.py --eval scripted [--checkpoint RUN --eval planner]

Runs alternate (off, on, on, off, ...) over the same seeds so that a machine whose speed drifts affects both
alike; prints the median time per step of each, the median of the per-repeat on/off ratios, and the .rrd
size. ``--planner`` also logs what a planner would (4 imagined frames at half size, costs of 3 iterations x
64 candidates, progress, chosen action): the upper bound, since a real planner step costs far more than
an env step.

``--eval POLICY`` times what users run instead: the whole ``worldmot eval`` path (episodes, eval_info.json,
videos) with and without its eval.rrd (for the planner: with and without its traces of imagined frames and
costs), interleaved the same way.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import worldmot.envs  # noqa: F401  registers the worldmot/* ids
from worldmot.policies.factory import make_policy
from worldmot.viz.episodes import EpisodeRecorder


def run(env, policy, seeds: list[int], path: Path | None, planner: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all threads of this process) and env steps for one episode per seed;
    logs every step to ``path`` when given."""
    rng = np.random.default_rng(0)
    rec = EpisodeRecorder(path, fps=env.metadata.get("render_fps")) if path is not None else None
    steps = 0
    start, cpu = time.perf_counter(), time.process_time()
    for i, seed in enumerate(seeds):
        obs, info = env.reset(seed=seed)
        policy.reset(seed=seed)
        goal = env.unwrapped.render_goal()  # both ways: an evaluation with a goal image renders it anyway
        if rec is not None:
            rec.start_episode(i, info["instruction"], goal_image=goal)
        done, t = False, 0
        while not done:
            action = policy.act({**obs, "task": info["instruction"]})
            frame, reasoning = obs["pixels"]["top"], policy.reasoning
            obs, reward, terminated, truncated, step_info = env.step(action)
            done = terminated or truncated
            if rec is not None:
                extra = {}
                if planner:
                    h = frame.shape[0] // 2
                    imagined = np.repeat(frame[None, ::2, ::2], 4, 0)[:, :h, :h]
                    extra = dict(action_chosen=action, imagined_frames=imagined, candidate_costs=rng.random((3, 64)),
                                 predicted_progress=float(reward))
                rec.log_step(t, frame, action, reasoning=reasoning, reward=float(reward),
                             success=bool(step_info.get("is_success", False)), **extra)
            t += 1
        steps += t
        if rec is not None:
            rec.end_episode()
    if rec is not None:
        rec.close()
    return time.perf_counter() - start, time.process_time() - cpu, steps


def bench_eval(args) -> None:
    from worldmot.evaluation.run import evaluate

    model = plan = None
    if args.eval in ("model", "planner"):
        from worldmot.checkpoint import load_model
        from worldmot.planning import PlannerConfig

        model, plan = load_model(args.checkpoint), PlannerConfig()
    tmp = Path(tempfile.mkdtemp())
    times = {"off": [], "on": []}
    ratios = []
    for r in range(args.repeats):
        seconds = {}
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            start = time.perf_counter()
            evaluate(args.env, args.eval, tmp / f"{mode}{r}", model=model, plan=plan, episodes=args.episodes,
                     num_envs=min(10, args.episodes), videos=2, rrd=mode == "on")
            seconds[mode] = time.perf_counter() - start
            times[mode].append(seconds[mode])
        ratios.append(seconds["on"] / seconds["off"])
    size = (tmp / "on0" / "eval.rrd").stat().st_size
    print(f"worldmot eval --env {args.env} --policy {args.eval} --episodes {args.episodes}, {args.repeats} repeats, "
          f"{platform.processor() or platform.machine()}")
    print(f"  --no-rrd        {statistics.median(times['off']):7.2f} s")
    print(f"  with eval.rrd   {statistics.median(times['on']):7.2f} s   (.rrd {size / 2**20:.1f} MB)")
    print(f"  overhead        {100 * (statistics.median(ratios) - 1):+6.1f} %  (median of per-repeat ratios; "
          f"{', '.join(f'{100 * (x - 1):+.1f}' for x in ratios)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="worldmot/Reach-v0")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--planner", action="store_true", help="also log imagined frames, candidate costs, progress")
    p.add_argument("--eval", choices=("random", "scripted", "model", "planner"), help="time worldmot eval instead")
    p.add_argument("--checkpoint", help="with --eval model/planner: the trained run")
    args = p.parse_args()
    if args.eval:
        return bench_eval(args)

    env = gym.make(args.env, image_size=args.image_size)
    policy = make_policy("scripted", env)
    seeds = list(range(args.episodes))
    tmp = Path(tempfile.mkdtemp())
    run(env, policy, seeds[:1], tmp / "warmup.rrd", args.planner)  # warm-up: renderer, rerun's lazy imports
    per_step = {"off": [], "on": []}
    ratios, cpu_ratios, size = [], [], 0
    for r in range(args.repeats):
        times, cpus = {}, {}
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            path = tmp / f"run{r}.rrd" if mode == "on" else None
            seconds, cpu, steps = run(env, policy, seeds, path, args.planner)
            times[mode], cpus[mode] = seconds, cpu
            per_step[mode].append(seconds / steps * 1e6)
            if path is not None:
                size = path.stat().st_size
                path.unlink()
        ratios.append(times["on"] / times["off"])
        cpu_ratios.append(cpus["on"] / cpus["off"])
    env.close()
    print(f"{args.env} {args.image_size}x{args.image_size}, {args.episodes} episodes x {args.repeats} repeats, "
          f"{'planner-like' if args.planner else 'policy'} logging, {platform.processor() or platform.machine()}")
    print(f"  without logging  {statistics.median(per_step['off']):8.0f} us/step")
    print(f"  with logging     {statistics.median(per_step['on']):8.0f} us/step   (.rrd {size / 2**20:.1f} MB)")
    print(f"  overhead         {100 * (statistics.median(ratios) - 1):+7.1f} %  (median of per-repeat ratios; "
          f"{', '.join(f'{100 * (x - 1):+.1f}' for x in ratios)})")
    print(f"  CPU overhead     {100 * (statistics.median(cpu_ratios) - 1):+7.1f} %  (process CPU time, all threads; "
          f"{', '.join(f'{100 * (x - 1):+.1f}' for x in cpu_ratios)})")


if __name__ == "__main__":
    main()
