"""Does success inside the world model predict success in the simulator? Pearson r and rank agreement.

A policy is identified by (env, policy name, its checkpoint for model/planner, held-out wordings, seed, planner
settings); each ``--in-model`` evaluation of it beside its evaluation in the simulator gives a pair of success
rates.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from worldmot.errors import WorldmotError


def find_eval_infos(paths: list[str | Path]) -> list[tuple[Path, dict]]:
    """eval_info.json files named directly or found under the given folders."""
    found = []
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(p.rglob("eval_info.json")) if p.is_dir() else None
        if files is None:
            raise WorldmotError(f"{p}: no such file or folder (expected eval_info.json files or folders of them)")
        for f in files:
            try:
                info = json.loads(f.read_text())
                info["aggregated"]["pc_success"]
            except (ValueError, KeyError, TypeError):
                raise WorldmotError(f"{f}: not an eval_info.json of worldmot eval (expected aggregated.pc_success)") from None
            found.append((f, info))
    return found


def _policy_key(info: dict) -> tuple:
    """What the policy is: its name, its own checkpoint (model and planner only), the wordings and seeds, and
    a planner's settings (two planners on one checkpoint are two policies)."""
    uses_model = info["policy"] in ("model", "planner")
    plan = json.dumps(info["plan"], sort_keys=True) if info.get("plan") else "-"
    return (info["env"], info["policy"], str(info.get("checkpoint")) if uses_model else "-",
            bool(info.get("held_out_instructions")), info.get("seed"), plan)


def pair_up(infos: list[tuple[Path, dict]]) -> list[dict]:
    """[{policy, world_model, sim, model}]: each in-model evaluation beside the same policy's evaluation in the
    simulator (success rates in %). A random or scripted policy judged in two world models gives two pairs."""
    sim = {_policy_key(i): float(i["aggregated"]["pc_success"]) for _, i in infos if not i.get("in_model")}
    pairs = []
    for _, info in infos:
        key = _policy_key(info)
        if info.get("in_model") and key in sim:
            pairs.append({"policy": list(key), "world_model": str(info.get("checkpoint")), "sim": sim[key],
                          "model": float(info["aggregated"]["pc_success"])})
    return sorted(pairs, key=lambda p: (str(p["policy"]), p["world_model"]))


def pair_up_per_task(infos: list[tuple[Path, dict]]) -> list[dict]:
    """As :func:`pair_up`, one pair per task for multi-task envs (eval_info.json's ``per_task``, e.g.
    metaworld/MT10): [{policy, world_model, task, sim, model}]; empty where no evaluation has per_task."""
    sim = {(_policy_key(i), t["task"]): float(t["metrics"]["pc_success"])
           for _, i in infos if not i.get("in_model") for t in i.get("per_task", ())}
    pairs = []
    for _, info in infos:
        if not info.get("in_model"):
            continue
        key = _policy_key(info)
        for t in info.get("per_task", ()):
            if (key, t["task"]) in sim:
                pairs.append({"policy": list(key), "world_model": str(info.get("checkpoint")), "task": t["task"],
                              "sim": sim[key, t["task"]], "model": float(t["metrics"]["pc_success"])})
    return sorted(pairs, key=lambda p: (str(p["policy"]), p["world_model"], p["task"]))


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; nan when either side is constant (no ranking to agree with)."""
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def agreement(pairs: list[dict]) -> dict:
    if len(pairs) < 2:
        raise WorldmotError(f"{len(pairs)} evaluation(s) run both in the simulator and --in-model "
                            "(expected at least 2 policies or checkpoints)")
    sim = np.array([p["sim"] for p in pairs])
    model = np.array([p["model"] for p in pairs])
    return {"n": len(pairs), "pearson_r": correlation(sim, model),
            "spearman_rho": correlation(ranks(sim), ranks(model))}


def _settings(plan: dict) -> str:
    """The planner settings that differ from the defaults, as key=value."""
    from dataclasses import asdict

    from worldmot.planning import PlannerConfig

    default = asdict(PlannerConfig())
    return " ".join(f"{k}={v}" for k, v in plan.items() if default.get(k) != v)


def per_task_markdown(pairs: list[dict]) -> str:
    """The per-task pairs' agreement, one line (empty without per-task pairs; "" for fewer than 2)."""
    if len(pairs) < 2:
        return ""
    stats = agreement(pairs)
    policies = len({str(p["policy"]) for p in pairs})
    r = "undefined (one side constant)" if np.isnan(stats["pearson_r"]) else (
        f"{stats['pearson_r']:.3f}, rank agreement (Spearman rho) = {stats['spearman_rho']:.3f}")
    return f"Per task: Pearson r = {r} over {stats['n']} (policy, task) pairs of {policies} policies.\n"


def report_markdown(pairs: list[dict], stats: dict) -> str:
    lines = ["| env | policy | world model | success in the simulator | success in the model |", "|---|---|---|---|---|"]
    for p in pairs:
        env, policy = p["policy"][:2]
        if p["policy"][5] != "-":
            policy = f"{policy} {_settings(json.loads(p['policy'][5]))}".rstrip()
        lines.append(f"| {env} | {policy} | {p['world_model']} | {p['sim']:.0f}% | {p['model']:.0f}% |")
    lines.append("")
    if np.isnan(stats["pearson_r"]):
        same = "the model" if len({p["model"] for p in pairs}) == 1 else "the simulator"
        lines.append(f"Pearson r and rank agreement are undefined over these {stats['n']} policies/checkpoints: "
                     f"{same} gave every one of them the same success rate.")
    else:
        lines.append(f"Pearson r = {stats['pearson_r']:.3f}, rank agreement (Spearman rho) = "
                     f"{stats['spearman_rho']:.3f} over {stats['n']} policies/checkpoints.")
    return "\n".join(lines) + "\n"
