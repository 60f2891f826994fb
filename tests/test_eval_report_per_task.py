"""worldmot eval-report on a multi-task env: besides the policies, Pearson r over (policy, task) pairs from the
per_task of eval_info.json (metaworld/MT10's shape); no Meta-World needed."""
from __future__ import annotations

import json

import pytest

from worldmot.cli import main
from worldmot.evaluation.per_task import TaskLabel, per_task_report


def _write(path, policy, in_model, successes):
    """An eval_info.json of ``policy`` with one episode per task of ``successes`` (two tasks, in turn)."""
    rows = [{"episode_ix": i, "sum_reward": 0.0, "max_reward": 0.0, "success": s} for i, s in enumerate(successes)]
    labels = [TaskLabel("easy", 0, "reach-v3"), TaskLabel("hard", 1, "push-v3")] * (len(rows) // 2)
    report = per_task_report(rows, labels, {"eval_s": 1.0, "eval_ep_s": 0.5})
    info = {"env": "metaworld/MT10", "policy": policy, "held_out_instructions": False, "seed": 100000,
            "checkpoint": "RUN" if policy == "model" else None, "in_model": in_model,
            "aggregated": {"pc_success": report["overall"]["pc_success"]}, **report}
    path.mkdir(parents=True)
    (path / "eval_info.json").write_text(json.dumps(info))


def test_eval_report_pairs_policies_and_tasks(tmp_path, capsys):
    # simulator / model: random 0,0 / 0,0; scripted 100,100 / 100,50; model 100,0 / 50,0 (reach, push)
    for policy, sim, im in (("random", [0, 0, 0, 0], [0, 0, 0, 0]), ("scripted", [1, 1, 1, 1], [1, 1, 1, 0]),
                            ("model", [1, 0, 1, 0], [1, 0, 0, 0])):
        _write(tmp_path / policy, policy, False, [bool(x) for x in sim])
        _write(tmp_path / f"im_{policy}", policy, True, [bool(x) for x in im])
    out = tmp_path / "report.md"
    assert main(["eval-report", str(tmp_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "over 3 policies/checkpoints" in text and "over 6 (policy, task) pairs of 3 policies" in text
    stats = json.loads(out.with_suffix(".json").read_text())
    tasks = {(p["policy"][1], p["task"]): (p["sim"], p["model"]) for p in stats["per_task"]["pairs"]}
    assert tasks[("scripted", "push-v3")] == (100.0, 50.0) and tasks[("model", "reach-v3")] == (100.0, 50.0)
    assert stats["per_task"]["n"] == 6 and stats["per_task"]["pearson_r"] == pytest.approx(0.8944, abs=1e-3)  # 10000 / sqrt(15000 * 8333.3)
