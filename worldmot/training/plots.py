"""PNG of the training curves (loss parts, validation PSNR against copying the last frame)."""
from __future__ import annotations

import json
from pathlib import Path

from worldmot.io import atomic_write


def plot_curves(metrics: Path, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in Path(metrics).read_text().splitlines() if l.strip()] if Path(metrics).exists() else []
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if r.get("split") == "val"]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = [r["step"] for r in train]
    for key in ("loss", "ce", "fm", "st", "kp"):
        if key in train[0] and any(r[key] > 0 for r in train):  # older runs lack st; data without keypoints: kp 0
            axes[1 if key == "fm" else 0].plot(steps, [r[key] for r in train], label=key)
    axes[0].set_title("loss = ce + lambda_fm fm + lambda_state st + lambda_keypoint kp"), axes[1].set_title("flow matching (x0 MSE)")
    axes[0].set_yscale("log"), axes[1].set_yscale("log")
    for k in (1, 2, 4):
        pts = [(r["step"], r[f"psnr_{k}"], r[f"copy_psnr_{k}"]) for r in val if f"psnr_{k}" in r]
        if pts:
            line, = axes[2].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"model, {k} ahead")
            axes[2].plot([p[0] for p in pts], [p[2] for p in pts], ls="--", color=line.get_color(), label=f"copy, {k} ahead")
    axes[2].set_title("validation PSNR (dB)")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:  # no PSNR points when validation computed losses only
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return Path(out)
