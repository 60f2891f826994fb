"""Crash consistency of ``worldmot demo`` by fault injection: killed at a crash point of a stage (record,
train, evaluate, report), the demo run again ends with the outputs of an uninterrupted demo: the same files,
dataset, metrics, weights, episodes and report (timings aside). The default run kills one demo at a point of
each stage in turn; the slow test kills at every point, one stage per test."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import worldmot.io as wio
from crash_helpers import CrashPoints, assert_same_dataset, count_points
from worldmot.checkpoint import exported_step
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.demo import DemoConfig, run_demo
from worldmot.demo.config import POLICIES

# test_demo.py's small demo: 4 episodes, a 1-layer model trained 2 steps, 1-2 episodes per policy
TRAIN = ["batch_size=2", "val.every=2", "val.batches=1", "checkpoint_every=2", "data.num_workers=0",
         "model.depth=1", "model.width=32", "model.heads=2", "steps=2"]
STAGES = ("record", "train", "evaluate", "report")


def _demo(out: Path) -> Path:
    return run_demo(DemoConfig(episodes=4, eval_episodes=2, planner_episodes=1, train_overrides=TRAIN), out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted demo and the crash points it passed."""
    out = tmp_path_factory.mktemp("crash-demo-ref") / "d"
    with pytest.MonkeyPatch.context() as mp:
        points = count_points(mp, lambda: _demo(out))
    return out, points


class KillAtName:
    """``FAULT_HOOK`` that kills at the ``nth`` passage of crash point ``name`` in this invocation."""

    def __init__(self, name: str, nth: int = 1):
        self.name, self.nth, self.count = name, nth, 0

    def __call__(self, point: str) -> None:
        self.count += point == self.name
        if point == self.name and self.count == self.nth:
            raise wio.Killed(point)


def _killed(monkeypatch, hook, out: Path) -> None:
    monkeypatch.setattr(wio, "FAULT_HOOK", hook)
    try:
        with pytest.raises(wio.Killed):
            _demo(out)
    finally:
        monkeypatch.setattr(wio, "FAULT_HOOK", None)


def _eval_results(out: Path, policy: str) -> dict:
    """eval_info.json without the timings and the run folder's path."""
    info = _untimed(json.loads((out / "eval" / policy / "eval_info.json").read_text()))
    info.pop("checkpoint")
    return info


def _untimed(value):
    """``value`` without the seconds (eval_s, plan_s_median, ...) at any depth."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not (k.endswith("_s") or "_s_" in k)}
    return [_untimed(v) for v in value] if isinstance(value, list) else value


def _report_results(out: Path) -> list[str]:
    """The report's numbers that are results (the success table without its timings, the prediction section)."""
    text = (out / "report.md").read_text()
    rows = [" | ".join(line.split(" | ")[:4]) for line in text.splitlines() if line.startswith("| ")]
    return rows + [text[text.index("## Prediction"): text.index("## Time")]]


def _files(out: Path) -> list[str]:
    """Every file and folder but the dataset's (a resumed recording starts new data files: same content)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.parts[len(out.parts)] != "data")


def _same_demo(out: Path, ref: Path) -> None:
    assert _files(out) == _files(ref), "different files (a missing output, a temporary)"
    assert not list(out.rglob(".*")), "temporaries left"
    assert_same_dataset(LeRobotDatasetReader(out / "data"), LeRobotDatasetReader(ref / "data"))
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
                for line in (o / "run/metrics.jsonl").read_text().splitlines()] for o in (out, ref)]
    assert metrics[0] == metrics[1]
    a, b = (load_file(str(o / "run/model/model.safetensors")) for o in (out, ref))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert exported_step(out / "run/model") == exported_step(ref / "run/model") == 2
    for policy in POLICIES:
        assert _eval_results(out, policy) == _eval_results(ref, policy), policy
    assert _report_results(out) == _report_results(ref)


def test_demo_killed_in_each_stage_in_turn_ends_as_an_uninterrupted_demo(reference, tmp_path, monkeypatch):
    ref, _ = reference
    out = tmp_path / "d"
    for name, nth in [("info.json:written", 2),  # record: the second episode's commit point
                      ("step_00000002/:renamed", 1),  # train: the last checkpoint is in, its export is not
                      ("eval.rrd:renamed", 3),  # evaluate: the model's episodes are in, its eval_info.json is not
                      ("demo.rrd:written", 1)]:  # report
        _killed(monkeypatch, KillAtName(name, nth), out)
    _demo(out)
    _same_demo(out, ref)


def _stage_points(points: list[str]) -> dict[str, list[int]]:
    """The 1-based crash points of each stage; a stage ends with its time written to stages.json."""
    stages, stage = {s: [] for s in STAGES}, 0
    for k, point in enumerate(points, start=1):
        stages[STAGES[stage]].append(k)
        if point == "stages.json:renamed" and stage < len(STAGES) - 1:
            stage += 1
    return stages


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_every_demo_crash_point_recovers(stage, reference, tmp_path, monkeypatch):
    ref, points = reference
    ks = _stage_points(points)[stage]
    assert ks, stage
    for k in ks:
        out = tmp_path / f"k{k}"
        _killed(monkeypatch, CrashPoints(k), out)
        _demo(out)
        _same_demo(out, ref)
    print(f"{len(ks)} of {len(ks)} demo crash points of the {stage} stage recovered ({len(points)} in all)")
