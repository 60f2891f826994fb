"""Crash consistency of training by fault injection: a kill at a crash point of a run (a metrics line, a
checkpoint save or prune, a model export, the curves), then ``train --resume`` to the end, which must equal an
uninterrupted run: the same metrics lines (timing aside), checkpoints and exported weights. Every point in the
slow test, the ones that once lost something in the default run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import worldmot
import worldmot.io as wio
from crash_helpers import CrashPoints, count_points
from datasets_helpers import features, write_dataset
from test_training import SMALL
from worldmot.checkpoint import exported_step
from worldmot.training import checkpoints as ckpt
from worldmot.training.loop import train
from worldmot.training.settings import load_train_config

# 6 steps: checkpoints at 2, 4, 6 (the one at 2 pruned at 6), validation at 3 and 6, an export per checkpoint
STEPS = ["steps=6", "checkpoint_every=2", "val.every=3", "keep_checkpoints=2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash-train") / "ds"
    write_dataset(root, [14, 11, 16, 9, 12], features(size=(16, 16)))
    return root


def _train(dataset: Path, run: Path, resume: bool = False) -> Path:
    return train(load_train_config([f"data.root={dataset}", f"run_dir={run}", *SMALL, *STEPS]), resume=resume)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted run and the crash points it passed."""
    run = tmp_path_factory.mktemp("crash-train-ref") / "run"
    with pytest.MonkeyPatch.context() as mp:
        points = count_points(mp, lambda: _train(dataset, run))
    return run, points


class TearingKill(CrashPoints):
    """Kill at point ``kill_at``; a kill just after a metrics line also leaves half of a next line, as a kill
    during a write (or a power cut) can."""

    def __init__(self, kill_at: int, run: Path):
        super().__init__(kill_at)
        self.run = run

    def __call__(self, name: str) -> None:
        if len(self.seen) + 1 == self.kill_at and name == "metrics.jsonl:appended":
            with open(self.run / "metrics.jsonl", "a") as f:
                f.write('{"step": 99, "loss": 0.')
        super().__call__(name)


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def _same_run(run: Path, ref: Path) -> None:
    assert _metrics(run) == _metrics(ref)
    a, b = load_file(str(ref / "model/model.safetensors")), load_file(str(run / "model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert exported_step(run / "model") == 6
    assert [p.name for p in ckpt.list_checkpoints(run)] == [p.name for p in ckpt.list_checkpoints(ref)]
    assert (run / "curves.png").exists()
    assert not list(run.rglob(".*")), "temporaries left"


def _kill_then_resume(monkeypatch, dataset: Path, run: Path, points: list[str], k: int) -> None:
    """Kill the run at point k (1-based); the model it had exported still loads; resume to the end."""
    monkeypatch.setattr(wio, "FAULT_HOOK", TearingKill(k, run))
    with pytest.raises(wio.Killed, match=re.escape(points[k - 1])):
        _train(dataset, run)
    monkeypatch.setattr(wio, "FAULT_HOOK", None)
    if "model/:renamed" in points[: k - 1]:  # a model was exported before the kill: it must load
        worldmot.load(run)
    _train(dataset, run, resume=True)


def _point(points: list[str], name: str, nth: int = 1) -> int:
    """The 1-based index of the nth passage of crash point ``name``."""
    return [i + 1 for i, p in enumerate(points) if p == name][nth - 1]


@pytest.mark.parametrize("name,nth", [
    ("metrics.jsonl:appended", 1),  # before the first checkpoint, a line cut: resume starts over
    ("model/:moved-aside", 1),  # between the two renames that replace model/
    ("step_00000006/:renamed", 1),  # the last checkpoint is in, its export is not
    ("step_00000002/:pruned", 1),  # a checkpoint hidden for deletion
])
def test_kill_at_a_crash_point_then_resume_equals_the_uninterrupted_run(name, nth, dataset, reference, tmp_path,
                                                                         monkeypatch):
    ref, points = reference
    run = tmp_path / "run"
    _kill_then_resume(monkeypatch, dataset, run, points, _point(points, name, nth))
    _same_run(run, ref)


@pytest.mark.slow
def test_every_training_crash_point_recovers(dataset, reference, tmp_path, monkeypatch):
    ref, points = reference
    kinds = {p.split(":")[0] for p in points}
    assert {"metrics.jsonl", "model/", "step_00000002/", "curves.png"} <= kinds, kinds
    for k in range(1, len(points) + 1):
        run = tmp_path / f"k{k}"
        _kill_then_resume(monkeypatch, dataset, run, points, k)
        _same_run(run, ref)
    print(f"{len(points)} of {len(points)} training crash points recovered")
