"""MoT vs dense, as in the MoT paper (Liang et al. 2024): steps and wall-clock each MoT needs to reach the
dense model's final validation loss, for the AR loss (ce) and the flow-matching loss (fm) separately.

    python tools/benchmarks/mot_vs_dense.py [--data DIR] [--steps 800] [--seeds 0 1] [--out bench-mot]

Trains the full MoT (text / action+state / frame experts), the two-path MoT (AR / DiT) and the dense
baseline (one expert; the same active parameters and FLOPs per token), on the same data with the same seeds
and schedule, one after another (never two trainings at once: they would share the cores), validating the
held-out losses every ``--val-every`` steps with fixed diffusion times and noise. Finished runs are reused
when the script is run again. Without ``--data`` it records Reach episodes (scripted expert with exploration
noise) into OUT/data first. Writes OUT/mot_vs_dense.json and OUT/mot_vs_dense.png and prints a table.

The fraction for a loss is the first (linearly interpolated) step at which the MoT's seed-averaged
validation loss reaches the dense model's seed-averaged final one, over the dense model's steps; the
wall-clock fraction scales that step by each run's measured seconds per step.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {"full MoT": "tiny", "two-path MoT": "two_path", "dense": "dense"}
LOSSES = ("val_ce", "val_fm")


def ensure_data(out: Path, data: str | None, episodes: int) -> Path:
    if data:
        return Path(data)
    from worldmot.recording import record

    root = out / "data"
    info = root / "meta" / "info.json"
    if not (info.exists() and json.loads(info.read_text())["total_episodes"] >= episodes):
        record("worldmot/Reach-v0", "scripted", episodes, root, num_envs=2, resume=root.exists(),
               policy_kwargs={"action_noise": 0.5})
    return root


def train_variant(out: Path, data: Path, model: str, seed: int, args) -> dict:
    """One training run (reused when finished): {"val": [rows], "seconds": wall time, "steps": n}."""
    from worldmot.training.settings import load_train_config as parse
    from worldmot.training.loop import train

    run = out / "runs" / f"{model}-seed{seed}"
    result = run / "bench.json"
    if result.exists():
        return json.loads(result.read_text())
    cfg = parse(["tiny", f"model={model}", f"data.root={data}", f"run_dir={run}", f"seed={seed}",
                 f"steps={args.steps}", f"batch_size={args.batch_size}", f"val.every={args.val_every}",
                 "val.full=false", f"val.batches={args.val_batches}", f"checkpoint_every={args.steps}"])
    if run.exists():
        import shutil

        shutil.rmtree(run)  # an unfinished run starts over: its wall time would not be comparable
    start = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    res = {"val": [r for r in rows if r.get("split") == "val"], "seconds": seconds, "steps": args.steps}
    result.write_text(json.dumps(res))
    return res


def curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Validation steps and the seed-averaged loss at each."""
    steps = np.array([r["step"] for r in runs[0]["val"]])
    values = np.mean([[r[key] for r in run["val"]] for run in runs], axis=0)
    return steps, values


def first_crossing(steps: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """The first step (interpolated between validations) at which ``values`` falls to ``target``."""
    for i, v in enumerate(values):
        if v <= target:
            if i == 0:
                return float(steps[0])
            s0, s1, v0 = steps[i - 1], steps[i], values[i - 1]
            return float(s0 + (s1 - s0) * (v0 - target) / (v0 - v))
    return None


def analyse(results: dict[str, list[dict]]) -> dict:
    dense = results["dense"]
    dense_steps = dense[0]["steps"]
    dense_seconds = float(np.mean([r["seconds"] for r in dense]))
    table = {}
    for name, runs in results.items():
        sec_per_step = float(np.mean([r["seconds"] / r["steps"] for r in runs]))
        row = {"seconds_per_step": sec_per_step}
        for key in LOSSES:
            target = float(curve(dense, key)[1][-1])
            steps, values = curve(runs, key)
            reach = first_crossing(steps, values, target)
            row[key] = {"final": float(values[-1]), "dense_final": target,
                        "step_fraction": None if reach is None else reach / dense_steps,
                        "wall_fraction": None if reach is None else reach * sec_per_step / dense_seconds}
        table[name] = row
    return table


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, LOSSES):
        for name, runs in results.items():
            steps, mean = curve(runs, key)
            each = np.array([[r[key] for r in run["val"]] for run in runs])
            line, = ax.plot(steps, mean, label=name)
            ax.fill_between(steps, each.min(0), each.max(0), color=line.get_color(), alpha=0.2)
        ax.axhline(curve(results["dense"], key)[1][-1], color="k", ls=":", lw=0.8)
        ax.set_title(f"held-out {'AR cross-entropy' if key == 'val_ce' else 'flow matching (x0 MSE)'}")
        ax.set_xlabel("step"), ax.set_yscale("log"), ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def fmt(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a LeRobot dataset (default: record Reach into OUT/data)")
    p.add_argument("--episodes", type=int, default=400, help="episodes to record when --data is not given")
    p.add_argument("--steps", type=int, default=800, help="at 300 no model has converged (BENCHMARKS.md)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--val-batches", type=int, default=4, help="held-out batches of batch-size windows")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default="bench-mot")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(out, args.data, args.episodes)
    results = {name: [train_variant(out, data, model, seed, args) for seed in args.seeds]
               for name, model in VARIANTS.items()}
    table = analyse(results)
    plot(results, out / "mot_vs_dense.png")
    (out / "mot_vs_dense.json").write_text(json.dumps({"args": vars(args), "table": table}, indent=2))
    print(f"\n## MoT vs dense ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps x batch {args.batch_size}, seeds {args.seeds})")
    print("| model | s/step | final val ce | steps to dense's ce | wall | final val fm | steps to dense's fm | wall |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        ce, fm = row["val_ce"], row["val_fm"]
        print(f"| {name} | {row['seconds_per_step']:.3f} | {ce['final']:.4f} | {fmt(ce['step_fraction'])} | "
              f"{fmt(ce['wall_fraction'])} | {fm['final']:.5f} | {fmt(fm['step_fraction'])} | {fmt(fm['wall_fraction'])} |")
    print(f"\n{out / 'mot_vs_dense.png'}")


if __name__ == "__main__":
    main()
