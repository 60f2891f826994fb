"""The demo's report.md: success table, planning latency, prediction quality, plots, stage times."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from worldmot.demo.config import DemoConfig, plan_name
from worldmot.io import atomic_write


def last_validation(run: Path) -> dict:
    """The newest validation row of RUN/metrics.jsonl ({} when there is none)."""
    path = run / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    val = [r for r in rows if r.get("split") == "val"]
    return val[-1] if val else {}


def success_table(infos: dict[str, dict]) -> str:
    lines = ["| policy | episodes | success | avg sum reward | s / episode | s / replan (median) |",
             "|---|---|---|---|---|---|"]
    for policy, info in infos.items():
        a = info["aggregated"]
        plan = f"{a['plan_s_median']:.2f}" if "plan_s_median" in a else "-"
        lines.append(f"| {policy} | {a['n_episodes']} | {a['pc_success']:.0f}% | {a['avg_sum_reward']:.2f} | "
                     f"{a['eval_ep_s']:.2f} | {plan} |")
    return "\n".join(lines)


def prediction_table(val: dict) -> str:
    if not val:
        return "(no validation row in metrics.jsonl)"
    lines = ["| frames ahead | model PSNR | copy last frame | model SSIM | copy SSIM |", "|---|---|---|---|---|"]
    for k in (1, 2, 4):
        if f"psnr_{k}" in val:
            lines.append(f"| {k} | {val[f'psnr_{k}']:.2f} dB | {val[f'copy_psnr_{k}']:.2f} dB | "
                         f"{val[f'ssim_{k}']:.3f} | {val[f'copy_ssim_{k}']:.3f} |")
    notes = []
    if "psnr_1_wrong_actions" in val:
        notes.append(f"- 1 frame ahead with another window's actions: {val['psnr_1_wrong_actions']:.2f} dB "
                     f"(the gap to {val['psnr_1']:.2f} dB is what the model reads from the actions)")
    if "action_mae" in val:
        notes.append(f"- teacher-forced action error {val['action_mae']:.3f} (constant baseline "
                     f"{val.get('action_mae_const', float('nan')):.3f}), action-token accuracy {val['action_acc']:.2f}")
    if "policy_action_mae" in val:
        notes.append(f"- closed-loop AR action error {val['policy_action_mae']:.3f} (constant "
                     f"{val['policy_action_mae_const']:.3f}); predicted progress error {val['policy_progress_mae']:.3f} "
                     f"(constant {val['policy_progress_mae_const']:.3f})")
    return "\n".join(lines + [""] + notes)


def plot_success(infos: dict[str, dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(infos)
    values = [infos[n]["aggregated"]["pc_success"] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(names, values, color=["#999", "#4a4", "#48c", "#c84"][: len(names)])
    ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values])
    ax.set_ylim(0, 105), ax.set_ylabel("success (%)")
    env = next(iter(infos.values()))["env"] if infos else ""
    ax.set_title(f"{env}: success in the simulator (unseen seeds)", fontsize=9)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return out


def write_report(out: Path, cfg: DemoConfig, run: Path, infos: dict[str, dict], stage_seconds: dict[str, float]) -> Path:
    plot_success(infos, out / "success.png")
    if (run / "curves.png").exists():
        atomic_write(out / "curves.png", lambda tmp: shutil.copyfile(run / "curves.png", tmp))
    val = last_validation(run)
    planner = infos.get("planner", {}).get("aggregated", {})
    latency = (f"{planner['plan_s_median']:.2f} s median, {planner['plan_s_p90']:.2f} s p90 per replanning step for "
               f"{cfg.eval_envs} envs planned together" if "plan_s_median" in planner else "(no planner run)")
    total = sum(stage_seconds.values())
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in stage_seconds.items())
    text = f"""# worldmot demo: {cfg.env}

Recorded {cfg.episodes} episodes with the scripted expert (exploration noise {cfg.action_noise} on
{cfg.noise_duty:.0%} of the steps, in bursts), trained the MoT world model ({run}), evaluated four policies
on unseen seeds from {cfg.eval_seed} (planner: {' '.join([plan_name(cfg), *cfg.plan_overrides])}).

## Success in the simulator

{success_table(infos)}

![success](success.png)

Planning latency: {latency}.

## Prediction (held-out episodes, last validation, step {val.get('step', '?')})

{prediction_table(val)}

![training curves](curves.png)

## Time

{total / 60:.1f} min in all ({times}).

Open the planner's episodes (real vs imagined frames, candidate costs, predicted progress):
`rerun {out / 'demo.rrd'}`
"""
    return atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
