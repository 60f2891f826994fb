"""A hostile user's inputs, one case a line: every one ends in exit code 2, ONE line on stderr naming the thing
at fault, and nothing written or deleted outside what the command owns. Runs in-process (worldmot.cli.main).

Each case is (id, command line with {placeholders}, a text the error line must hold, how to break the world
first). Placeholders: {ds} a good synthetic dataset, {run} a trained tiny run, {model} its model folder,
{w} the case's own folder, {file} a plain file, {eval} an eval output folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file, save_file

from datasets_helpers import features, write_dataset
from worldmot.cli import main as cli_main

SMALL = ["model.width=32", "model.depth=2", "model.heads=2", "model.mlp_ratio=2.0", "model.sequence.image_size=16",
         "model.sequence.patch_size=4", "model.sequence.instruction_len=16", "model.sequence.reasoning_len=8",
         "model.sequence.action_bins=32", "model.sequence.chunk=2", "batch_size=4", "data.num_workers=0",
         "log_every=1", "val.batches=1", "threads=1", "rerun=false"]
DATA = "data/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
REACH = "worldmot/Reach-v0"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    write_dataset(base / "ds", [14, 11, 16, 9, 12], features(size=(16, 16)))
    assert cli_main(["train", f"data.root={base / 'ds'}", f"run_dir={base / 'run'}", *SMALL, "steps=2",
                     "checkpoint_every=2", "val.every=2"]) == 0
    (base / "file").write_text("a plain file")
    eval_dir = base / "eval" / "x"
    eval_dir.mkdir(parents=True)
    (eval_dir / "eval_info.json").write_text(json.dumps({"aggregated": {"pc_success": 50.0}, "policy": "random",
                                                         "env": REACH, "in_model": False}))
    return base


# ------------------------------------------------------------------ ways to break a copy of the world
def _copy(world: Path, w: Path, name: str) -> Path:
    dst = w / name
    shutil.copytree(world / name, dst)
    return dst


def _json_edit(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def _garbage(path: Path) -> None:
    path.write_bytes(b"not what it should be\x00\xff")


def _parquet_edit(path: Path, change) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _set_values(table: pa.Table, key: str, value: float) -> pa.Table:
    col = table[key].combine_chunks()
    flat = col.flatten().to_numpy().copy()
    flat[5] = value
    return table.set_column(table.schema.get_field_index(key), key,
                            pa.FixedSizeListArray.from_arrays(pa.array(flat, col.type.value_type), col.type.list_size))


def _rename_column(table: pa.Table, old: str, new: str) -> pa.Table:
    return table.rename_columns([new if c == old else c for c in table.column_names])


def _wrong_shape(path: Path) -> None:
    weights = load_file(str(path))
    key = next(k for k, v in weights.items() if v.ndim == 2)
    weights[key] = weights[key][:, :-1].contiguous()
    save_file(weights, str(path))


def _fix_checksum(step_dir: Path, name: str) -> None:
    import hashlib

    _json_edit(step_dir / "state.json", lambda s: s["sha256"].__setitem__(name, hashlib.sha256((step_dir / name).read_bytes()).hexdigest()))


def ds_info(change):
    return lambda world, w: _json_edit(_copy(world, w, "ds") / "meta/info.json", change)


def ds_file(rel, breaker):
    return lambda world, w: breaker(_copy(world, w, "ds") / rel)


def model_file(rel, breaker):
    return lambda world, w: breaker(_copy(world, w, "run") / "model" / rel)


def ckpt_file(rel, breaker, checksum=False):
    def brk(world, w):
        step = sorted((_copy(world, w, "run") / "checkpoints").glob("step_*"))[-1]
        breaker(step / rel)
        if checksum:
            _fix_checksum(step, rel)
    return brk


def user_folder(world, w):
    (w / "mine").mkdir()
    (w / "mine" / "thesis.txt").write_text("years of work")


def mkdir(rel):
    return lambda world, w: (w / rel).mkdir(parents=True)


def run_leftovers(world, w):
    (w / "run2").mkdir()
    (w / "run2" / "metrics.jsonl").write_text('{"step": 1}\n')
    shutil.copytree(world / "run" / "model", w / "run2" / "model")


def symlink_to_user(world, w):
    user_folder(world, w)
    os.symlink(w / "mine", w / "link")


def none(world, w):
    pass


T = ["train", *SMALL, "steps=2"]
TD = [*T, "data.root={w}/ds", "run_dir={w}/r"]
R = ["record", "--env", REACH, "--episodes", "1", "--image-size", "16"]
E = ["eval", "--env", REACH, "--episodes", "1", "--num-envs", "1", "--no-rrd"]
V = ["viz", "dataset"]

CASES = [
    # record: values
    ("record-unknown-env", ["record", "--env", "worldmot/Nope-v0", "--episodes", "1", "--out", "{w}/o"], "--env", none),
    ("record-episodes-0", ["record", "--env", REACH, "--episodes", "0", "--out", "{w}/o"], "--episodes", none),
    ("record-num-envs-0", [*R, "--num-envs", "0", "--out", "{w}/o"], "--num-envs", none),
    ("record-image-size-0", [*R, "--image-size", "0", "--out", "{w}/o"], "--image-size 0", none),
    ("record-image-size-odd", [*R, "--image-size", "33", "--out", "{w}/o"], "--image-size 33", none),
    ("record-seed-negative", [*R, "--seed", "-5", "--out", "{w}/o"], "--seed -5", none),
    ("record-codec-bogus", [*R, "--codec", "bogus", "--out", "{w}/o"], "--codec 'bogus'", none),
    ("record-policy-unknown", [*R, "--policy", "nope", "--out", "{w}/o"], "nope", none),
    ("record-noise-negative", [*R, "--action-noise", "-1", "--out", "{w}/o"], "action_noise", none),
    ("record-noise-duty-0", [*R, "--action-noise", "0.5", "--noise-duty", "0", "--out", "{w}/o"], "noise_duty", none),
    # record: paths
    ("record-out-is-file", [*R, "--out", "{file}"], "is a file", none),
    ("record-out-user-folder", [*R, "--out", "{w}/mine"], "not empty", user_folder),
    ("record-out-under-file", [*R, "--out", "{file}/sub"], "file/sub", none),
    ("record-out-proc", [*R, "--out", "/proc/worldmot-out"], "/proc/worldmot-out", none),
    ("record-resume-foreign-files", [*R, "--resume", "--out", "{w}/mine"], "thesis.txt", user_folder),
    ("record-resume-other-env", [*R, "--resume", "--out", "{w}/ds"], "meta/info.json", ds_info(lambda i: None)),
    ("record-resume-bad-info", [*R, "--resume", "--out", "{w}/ds"], "info.json", ds_file("meta/info.json", _garbage)),
    ("record-out-newline-name", [*R, "--out", "{w}/a\nb"], "is a file", lambda world, w: (w / "a\nb").write_text("x")),
    # train: config keys and values
    ("train-unknown-key", [*T, "data.root={ds}", "run_dir={w}/r", "foo=1"], "foo", none),
    ("train-steps-not-int", [*T, "data.root={ds}", "run_dir={w}/r", "steps=abc"], "steps", none),
    ("train-model-unknown", [*T, "data.root={ds}", "run_dir={w}/r", "model=nope"], "nope", none),
    ("train-config-missing", ["train", "nope.yaml", "data.root={ds}", "run_dir={w}/r"], "nope.yaml", none),
    ("train-two-configs", ["train", "tiny", "small", "data.root={ds}", "run_dir={w}/r"], "CONFIG", none),
    ("train-action-key", [*T, "data.root={ds}", "run_dir={w}/r", "data.action_key=nope"], "'nope'", none),
    ("train-state-key", [*T, "data.root={ds}", "run_dir={w}/r", "data.state_key=nope"], "'nope'", none),
    # train: broken datasets, every file kind
    ("train-dataset-missing", [*T, "data.root={w}/none", "run_dir={w}/r"], "info.json", none),
    ("train-info-not-json", TD, "info.json", ds_file("meta/info.json", _garbage)),
    ("train-info-no-fps", TD, "'fps'", ds_info(lambda i: i.pop("fps"))),
    ("train-info-version", TD, "codebase_version", ds_info(lambda i: i.__setitem__("codebase_version", "v9"))),
    ("train-info-no-action", TD, "'action'", ds_info(lambda i: i["features"].pop("action"))),
    ("train-info-bad-shape", TD, "'observation.state'",
     ds_info(lambda i: i["features"]["observation.state"].__setitem__("shape", [7]))),
    ("train-zero-episodes", TD, "total_episodes 0", ds_info(lambda i: i.__setitem__("total_episodes", 0))),
    ("train-action-renamed", TD, "'action'", ds_file(DATA, lambda p: _parquet_edit(p, lambda t: _rename_column(t, "action", "act")))),
    ("train-data-garbage", TD, "file-000.parquet", ds_file(DATA, _garbage)),
    ("train-data-missing", TD, "file-000.parquet", ds_file(DATA, Path.unlink)),
    ("train-episodes-garbage", TD, "meta/episodes", ds_file(EPISODES, _garbage)),
    ("train-episodes-missing", TD, "meta/episodes", ds_file(EPISODES, Path.unlink)),
    ("train-tasks-garbage", TD, "tasks.parquet", ds_file("meta/tasks.parquet", _garbage)),
    ("train-stats-garbage", TD, "stats.json", ds_file("meta/stats.json", _garbage)),
    ("train-video-garbage", TD, "file-000.mp4", ds_file(VIDEO, _garbage)),
    ("train-video-missing", TD, "file-000.mp4", ds_file(VIDEO, Path.unlink)),
    ("train-action-nan", TD, "'action'", ds_file(DATA, lambda p: _parquet_edit(p, lambda t: _set_values(t, "action", np.nan)))),
    ("train-state-inf", TD, "'observation.state'",
     ds_file(DATA, lambda p: _parquet_edit(p, lambda t: _set_values(t, "observation.state", np.inf)))),
    # train: run folders and checkpoints
    ("train-run-dir-leftovers", [*T, "data.root={ds}", "run_dir={w}/run2"], "not empty", run_leftovers),
    ("train-run-dir-user-folder", [*T, "data.root={ds}", "run_dir={w}/mine"], "not empty", user_folder),
    ("train-run-dir-is-file", [*T, "data.root={ds}", "run_dir={file}"], "is a file", none),
    ("train-run-dir-under-file", [*T, "data.root={ds}", "run_dir={file}/r"], "file/r", none),
    ("train-resume-nothing", [*T, "data.root={ds}", "run_dir={w}/r", "--resume"], "no checkpoint", none),
    ("train-resume-wrong-shape", [*T, "data.root={ds}", "run_dir={w}/run", "steps=4", "--resume"], "do not fit",
     ckpt_file("model.safetensors", _wrong_shape, checksum=True)),
    ("train-resume-corrupt", [*T, "data.root={ds}", "run_dir={w}/run", "steps=4", "--resume"], "checksum",
     ckpt_file("model.safetensors", _garbage)),
    ("train-resume-state-json", [*T, "data.root={ds}", "run_dir={w}/run", "steps=4", "--resume"], "state.json",
     ckpt_file("state.json", _garbage)),
    # eval
    ("eval-unknown-env", ["eval", "--env", "worldmot/Nope-v0", "--policy", "random", "--out", "{w}/o"], "--env", none),
    ("eval-episodes-0", [*E, "--policy", "random", "--episodes", "0", "--out", "{w}/o"], "--episodes", none),
    ("eval-videos-negative", [*E, "--policy", "random", "--videos", "-1", "--out", "{w}/o"], "--videos -1", none),
    ("eval-model-no-checkpoint", [*E, "--policy", "model", "--out", "{w}/o"], "--checkpoint", none),
    ("eval-reason-not-model", [*E, "--policy", "scripted", "--reason", "--out", "{w}/o"], "--reason", none),
    ("eval-overrides-not-planner", [*E, "--policy", "scripted", "candidates=4", "--out", "{w}/o"], "candidates", none),
    ("eval-plan-unknown", [*E, "--policy", "planner", "--checkpoint", "{run}", "--plan", "nope", "--out", "{w}/o"], "nope", none),
    ("eval-plan-bad-key", [*E, "--policy", "planner", "--checkpoint", "{run}", "foo=1", "--out", "{w}/o"], "foo", none),
    ("eval-checkpoint-missing", [*E, "--policy", "model", "--checkpoint", "{w}/none", "--out", "{w}/o"], "none", none),
    ("eval-config-not-yaml", [*E, "--policy", "model", "--checkpoint", "{w}/run", "--out", "{w}/o"], "config.yaml",
     model_file("config.yaml", lambda p: p.write_text("width: [1, 2\n  depth: : :\n"))),
    ("eval-config-unknown-key", [*E, "--policy", "model", "--checkpoint", "{w}/run", "--out", "{w}/o"], "config.yaml",
     model_file("config.yaml", lambda p: p.write_text(p.read_text() + "bogus_key: 1\n"))),
    ("eval-weights-wrong-shape", [*E, "--policy", "model", "--checkpoint", "{w}/run", "--out", "{w}/o"], "do not fit",
     model_file("model.safetensors", _wrong_shape)),
    ("eval-weights-garbage", [*E, "--policy", "model", "--checkpoint", "{w}/run", "--out", "{w}/o"], "model.safetensors",
     model_file("model.safetensors", _garbage)),
    ("eval-meta-garbage", [*E, "--policy", "model", "--checkpoint", "{w}/run", "--out", "{w}/o"], "model_meta.json",
     model_file("model_meta.json", _garbage)),
    ("eval-other-env", [*E, "--policy", "model", "--checkpoint", "{run}", "--out", "{w}/o"], "trained on 'test'", none),
    ("eval-goal-judge-garbage", [*E, "--policy", "random", "--in-model", "--checkpoint", "{w}/run", "--out", "{w}/o"],
     "goal_judge.json", model_file("goal_judge.json", _garbage)),
    ("eval-goal-judge-negative", [*E, "--policy", "random", "--in-model", "--checkpoint", "{w}/run", "--out", "{w}/o"],
     "goal_judge.json", model_file("goal_judge.json", lambda p: p.write_text('{"tolerance": -1}'))),
    ("eval-goal-tolerance-in-sim", [*E, "--policy", "random", "--goal-tolerance", "0.5", "--out", "{w}/o"],
     "--goal-tolerance", none),
    ("eval-goal-tolerance-zero", [*E, "--policy", "random", "--in-model", "--checkpoint", "{run}", "--goal-tolerance",
                                  "0", "--out", "{w}/o"], "--goal-tolerance", none),
    ("eval-out-under-file", [*E, "--policy", "random", "--out", "{file}/o"], "file/o", none),
    # eval-report
    ("eval-report-missing", ["eval-report", "{w}/none"], "none", none),
    ("eval-report-not-json", ["eval-report", "{w}/e"], "eval_info.json",
     lambda world, w: (mkdir("e")(world, w), _garbage(w / "e" / "eval_info.json"))),
    ("eval-report-out-under-file", ["eval-report", "{eval}", "--out", "{file}/r.md"], "bad0/file", none),
    # viz
    ("viz-dataset-missing", [*V, "{w}/none", "--out", "{w}/o.rrd"], "none", none),
    ("viz-episode-out-of-range", [*V, "{ds}", "--episodes", "99", "--out", "{w}/o.rrd"], "99", none),
    ("viz-action-renamed", [*V, "{w}/ds", "--out", "{w}/o.rrd"], "'action'",
     ds_file(DATA, lambda p: _parquet_edit(p, lambda t: _rename_column(t, "action", "act")))),
    ("viz-zero-episodes", [*V, "{w}/ds", "--out", "{w}/o.rrd"], "episodes", ds_info(lambda i: i.__setitem__("total_episodes", 0))),
    ("viz-video-garbage", [*V, "{w}/ds", "--out", "{w}/o.rrd"], "file-000.mp4", ds_file(VIDEO, _garbage)),
    ("viz-out-under-file", [*V, "{ds}", "--out", "{file}/o.rrd"], "bad0/file", none),
    ("viz-newline-path", [*V, "{w}/x\ny", "--out", "{w}/o.rrd"], "x\\ny", none),
    # demo
    ("demo-user-folder", ["demo", "--out", "{w}/mine"], "thesis.txt", user_folder),
    ("demo-user-folder-fresh", ["demo", "--out", "{w}/mine", "--fresh"], "thesis.txt", user_folder),
    ("demo-symlink-to-user-folder", ["demo", "--out", "{w}/link", "--fresh"], "thesis.txt", symlink_to_user),
    ("demo-out-is-file", ["demo", "--out", "{file}"], "is a file", none),
    ("demo-episodes-0", ["demo", "--out", "{w}/d", "--episodes", "0"], "--episodes", none),
    ("demo-unknown-env", ["demo", "--out", "{w}/d", "--env", "worldmot/Nope-v0"], "--env", none),
    ("demo-plan-unknown", ["demo", "--out", "{w}/d", "--plan", "nope"], "nope", none),
    ("demo-bad-setting", ["demo", "--out", "{w}/d", "steps=abc"], "steps", none),
    ("demo-not-key-value", ["demo", "--out", "{w}/d", "steps"], "key=value", none),
]


def _snapshot(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p)] = b"<dir>" if p.is_dir() else p.read_bytes()
    return out


def test_at_least_60_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 60


@pytest.mark.parametrize("name,argv,expect,breaker", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, capsys, name, argv, expect, breaker):
    breaker(world, tmp_path)
    fill = {"ds": world / "ds", "run": world / "run", "model": world / "run" / "model", "w": tmp_path,
            "file": world / "file", "eval": world / "eval"}
    args = [a.format(**fill) for a in argv]
    before = _snapshot(world, tmp_path)
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    # as a terminal shows it: a progress bar redrawn with "\r" and cleared leaves nothing
    lines = [shown for line in err.split("\n") if (shown := line.split("\r")[-1].strip())]
    assert len(lines) == 1 and lines[0].startswith(f"worldmot {argv[0]}: error: "), err[-1500:]
    assert expect in lines[0], lines[0]
    assert _snapshot(world, tmp_path) == before, "the command wrote or deleted files"


@pytest.mark.parametrize("out", ["{file}/sub", "/proc/worldmot-out"])
def test_record_out_that_cannot_be_made_fails_before_the_env_starts(out, tmp_path, monkeypatch):
    import worldmot.recording as recording

    (tmp_path / "file").write_text("mine")
    monkeypatch.setattr(recording, "make_env", lambda *a, **k: pytest.fail("the env started"))
    with pytest.raises(OSError, match=out.format(file=".*file").replace("/", ".")):
        recording.record("worldmot/Reach-v0", "scripted", 1, out.format(file=tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
