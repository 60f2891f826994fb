"""``worldmot demo``: every stage's output, cached stages on a re-run, a resumed training stage, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import worldmot

from rrd_helpers import Recording

# a demo small enough for the test run: 4 episodes, a 1-layer model, 2 training steps, 1-2 episodes per policy
SMALL = ["--episodes", "4", "--eval-episodes", "2", "--planner-episodes", "1",
         "batch_size=2", "val.every=2", "val.batches=1", "checkpoint_every=2", "data.num_workers=0",
         "model.depth=1", "model.width=32", "model.heads=2"]


def run_demo(out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worldmot", "demo", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    res = run_demo(out, *SMALL, "steps=2")
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_demo_writes_every_stage_and_a_report(demo):
    out, res = demo
    assert json.loads((out / "data" / "meta" / "info.json").read_text())["total_episodes"] == 4
    assert (out / "run" / "model").is_dir() and (out / "run" / "curves.png").exists()
    for policy in ("random", "scripted", "model", "planner"):
        info = json.loads((out / "eval" / policy / "eval_info.json").read_text())
        assert info["policy"] == policy and info["aggregated"]["n_episodes"] == (1 if policy == "planner" else 2)
    assert json.loads((out / "eval" / "scripted" / "eval_info.json").read_text())["aggregated"]["pc_success"] == 100
    report = (out / "report.md").read_text()
    for row in ("| random |", "| scripted |", "| model |", "| planner |", "copy last frame", "per replanning step"):
        assert row in report, row
    assert (out / "success.png").stat().st_size > 1000 and (out / "curves.png").exists()
    # Reach records keypoints, the tiny config learns them, and the planner prices them (configs/plan/objects.yaml)
    assert worldmot.load(out / "run").keypoint_head is not None and "(planner: objects)" in report
    rec = Recording(out / "demo.rrd")
    assert rec.rows("episode_000/plan/imagined") >= 1  # the planner's imagined frames
    assert "| planner |" in res.stdout and f"rerun {out / 'demo.rrd'}" in res.stdout
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


def test_demo_rerun_skips_what_is_done_and_resumes_training(demo):
    out, _ = demo
    report = (out / "report.md").read_text()
    metrics = (out / "run" / "metrics.jsonl").read_text()
    res = run_demo(out, *SMALL, "steps=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done, skipped") == 6, res.stdout  # record, train, four evaluations
    assert (out / "run" / "metrics.jsonl").read_text() == metrics  # nothing was trained again
    again = (out / "report.md").read_text()
    assert again[: again.index("## Time")] == report[: report.index("## Time")]  # the same results, rewritten
    # a training stage that stopped early (as after an interruption) continues from its checkpoint
    res = run_demo(out, *SMALL, "steps=4")
    assert res.returncode == 0, res.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)) and steps[-1] == 4, steps


def test_demo_bad_input_is_one_line_and_writes_nothing(tmp_path):
    res = run_demo(tmp_path / "d", "--env", "worldmot/Nope-v0")
    assert res.returncode == 2 and "unknown Gymnasium id" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "d").exists()
    res = run_demo(tmp_path / "d", "--plan", "nope")
    assert res.returncode == 2 and "--plan nope: plan config 'nope': not a file and not one of" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "d").exists()
    res = run_demo(tmp_path / "d", "optim.lr=0")  # a training setting: refused before the recording
    assert res.returncode == 2 and "optim.lr=0.0: expected > 0" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "d").exists()
