"""Rerun recordings, read back without a viewer (rerun.chunk.RrdReader): entities, rows per entity and
timeline, image shapes and pixels, blueprints, interrupted writers, and ``worldmot viz`` errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rerun as rr

from datasets_helpers import FPS, features, pixel, write_dataset, write_v21
from rrd_helpers import Recording
from worldmot.cli import main as cli_main
from worldmot.errors import WorldmotError
from worldmot.viz.columns import ColumnBuffer, new_recording
from worldmot.viz.dataset import dataset_to_rrd
from worldmot.viz.images import ImagePolicy, grid, to_hwc_uint8
from worldmot.viz.episodes import EpisodeRecorder
from worldmot.viz.training import TrainingRecorder, metric_group

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def strict_rerun():
    """A malformed log call raises instead of warning (and silently dropping the rows)."""
    rr.set_strict_mode(True)
    yield
    rr.set_strict_mode(False)


def tab(bp: dict[str, dict], name: str) -> list[list[dict]]:
    """The rows of the blueprint container called ``name``: per child container, its views."""
    [container] = [v for v in bp.values() if v.get("ContainerBlueprint:display_name") == [name]]
    rows = []
    for child in container["ContainerBlueprint:contents"]:
        views = []
        for item in bp[child]["ContainerBlueprint:contents"]:
            inner = [item] if item.startswith("view/") else bp[item]["ContainerBlueprint:contents"]
            views += [bp[i] for i in inner]
        rows.append(views)
    return rows


# ---------------------------------------------------------------------------------------------- images
def test_to_hwc_uint8_layouts_and_ranges():
    chw = np.stack([np.full((4, 5), -1.0), np.zeros((4, 5)), np.ones((4, 5))])  # (3, H, W) in [-1, 1]
    out = to_hwc_uint8(chw)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 128, 255]
    batch = to_hwc_uint8(np.zeros((2, 3, 1, 4, 5), np.float32), value_range=(0.0, 1.0))  # (N, K, 1, H, W) grey
    assert batch.shape == (2, 3, 4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    assert to_hwc_uint8(rgba).shape == (4, 5, 3)
    with pytest.raises(WorldmotError, match=r"frames: shape \[2, 5, 7\]"):
        to_hwc_uint8(np.zeros((2, 5, 7)))
    assert grid(np.zeros((2, 3, 4, 5, 3), np.uint8)).shape == (2 * 4 + 1, 3 * 5 + 2, 3)


def test_column_buffer_keeps_one_kind_and_timeline_set_per_entity(tmp_path):
    rec = new_recording("worldmot test")
    rec.save(tmp_path / "x.rrd")
    buf = ColumnBuffer(rec, {"step": "sequence"})
    buf.scalars("a", {"step": 0}, [1.0])
    with pytest.raises(WorldmotError, match="one kind and one set of timelines"):
        buf.text("a", {"step": 1}, "x")
    with pytest.raises(WorldmotError, match="unknown timeline"):
        buf.scalars("b", {"frame": 0}, [1.0])
    with pytest.raises(WorldmotError, match=r"a: 2 values \(expected 1"):
        buf.scalars("a", {"step": 1}, [1.0, 2.0])
    buf.flush()
    rec.disconnect()
    assert Recording(tmp_path / "x.rrd").rows("a") == 1


# ---------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def two_camera_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viz") / "ds"
    write_dataset(root, [5, 7], features(cams=("top", "wrist"), size=(16, 24)))
    return root


def test_dataset_rrd_entities_rows_shapes_and_values(two_camera_dataset, tmp_path):
    out = tmp_path / "ds.rrd"
    res = dataset_to_rrd(two_camera_dataset, out, progress=False)
    assert res.episodes == [0, 1] and res.frames == 12 and not res.jpeg
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed
    r = Recording(out)
    assert r.has_footer and [s.application_id for s in r.recordings] == ["worldmot dataset"]
    for ep, n in ((0, 5), (1, 7)):
        root = f"episode_{ep:03d}"
        assert r.entities(root) == {f"{root}/{e}" for e in ("cameras/top", "cameras/wrist", "state", "action", "reward",
                                                             "done", "success", "instruction", "subtask")}
        for e in ("cameras/top", "cameras/wrist", "state", "action", "reward", "done", "success"):
            assert r.rows(f"{root}/{e}") == n, e
            assert r.timelines(f"{root}/{e}") == {"frame_index", "timestamp"}
        assert r.column(f"{root}/state", "frame_index") == list(range(n))
        ts = r.column(f"{root}/state", "timestamp")  # durations come back as nanoseconds
        np.testing.assert_allclose([t / 1e9 if isinstance(t, int) else t.total_seconds() for t in ts],
                                   np.arange(n) / FPS, atol=1e-6)
        state = np.asarray(r.column(f"{root}/state", "Scalars:scalars"))
        np.testing.assert_allclose(state, np.arange(3)[None] + 100 * ep + np.arange(n)[:, None])
        assert r.column(f"{root}/state", "SeriesLines:names", static=True) == [["state[0]", "state[1]", "state[2]"]]
        assert np.asarray(r.column(f"{root}/done", "Scalars:scalars")).ravel().tolist() == [0] * (n - 1) + [1]
        assert r.column(f"{root}/instruction", "TextLog:text") == [[f"task {ep % 2}"]]
        # the subtask changes every 3 frames: one text row per change
        assert r.column(f"{root}/subtask", "TextLog:text") == [[f"sub {k}"] for k in range((n + 2) // 3)]
        for cam, e in ((0, "cameras/top"), (1, "cameras/wrist")):
            frames = r.images(f"{root}/{e}")
            assert [f.shape for f in frames] == [(16, 24, 3)] * n
            np.testing.assert_allclose([f.mean() for f in frames], [pixel(ep, i, cam) for i in range(n)], atol=4)


def test_dataset_blueprint_cameras_on_top_series_below(two_camera_dataset, tmp_path):
    out = tmp_path / "ds.rrd"
    dataset_to_rrd(two_camera_dataset, out, episodes=[1], progress=False)
    r = Recording(out)
    assert r.entities() == r.entities("episode_001/")  # only the episode asked for
    cameras, below = tab(r.blueprint(), "episode 1")
    assert [v["ViewBlueprint:class_identifier"] for v in cameras] == [["2D"], ["2D"]]
    assert [v["ViewBlueprint:space_origin"] for v in cameras] == [["episode_001/cameras/top"],
                                                                  ["episode_001/cameras/wrist"]]
    kinds = [v["ViewBlueprint:class_identifier"][0] for v in below]
    assert kinds == ["TimeSeries", "TimeSeries", "TimeSeries", "TextLog"]
    assert [v["ViewBlueprint:space_origin"][0] for v in below[:2]] == ["episode_001/state", "episode_001/action"]


def test_dataset_jpeg_when_asked_or_over_budget(two_camera_dataset, tmp_path):
    res = dataset_to_rrd(two_camera_dataset, tmp_path / "a.rrd", episodes=[0], images=ImagePolicy(compress="always"),
                         progress=False)
    r = Recording(tmp_path / "a.rrd")
    assert res.jpeg and r.is_jpeg("episode_000/cameras/top")
    frames = r.images("episode_000/cameras/top")
    assert [f.shape for f in frames] == [(16, 24, 3)] * 5
    np.testing.assert_allclose([f.mean() for f in frames], [pixel(0, i) for i in range(5)], atol=6)
    # 12 frames x 2 cameras x 16x24x3 bytes is over a 0.01 MB budget: every frame goes out as JPEG
    res = dataset_to_rrd(two_camera_dataset, tmp_path / "b.rrd", images=ImagePolicy(raw_budget_mb=0.01), progress=False)
    assert res.jpeg and Recording(tmp_path / "b.rrd").is_jpeg("episode_001/cameras/wrist")


def test_dataset_interrupted_keeps_the_old_file_and_no_partial(two_camera_dataset, tmp_path, monkeypatch):
    out = tmp_path / "ds.rrd"
    dataset_to_rrd(two_camera_dataset, out, episodes=[0], progress=False)
    before = out.read_bytes()
    from worldmot.datasets.reader import LeRobotDatasetReader

    def interrupted(self, ep, camera, indices=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(LeRobotDatasetReader, "episode_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset_to_rrd(two_camera_dataset, out, progress=False)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ds.rrd"]


def test_dataset_rrd_of_a_lerobot_v21_dataset(tmp_path):
    write_v21(tmp_path / "v21", [4, 3])
    dataset_to_rrd(tmp_path / "v21", tmp_path / "v21.rrd", progress=False)
    r = Recording(tmp_path / "v21.rrd")
    assert {e: r.rows(e) for e in r.entities("episode_001")} == {
        "episode_001/cameras/top": 3, "episode_001/state": 3, "episode_001/action": 3, "episode_001/instruction": 1}
    assert r.column("episode_001/instruction", "TextLog:text") == [["the task"]]
    actions = np.asarray(r.column("episode_001/action", "Scalars:scalars"))
    np.testing.assert_allclose(actions, [[i, -i] for i in range(3)])


def test_viz_dataset_cli_on_a_recorded_reach_dataset(tmp_path, capsys, monkeypatch):
    from worldmot.datasets.reader import LeRobotDatasetReader
    from worldmot.recording import record

    record("worldmot/Reach-v0", "scripted", 2, tmp_path / "reach", image_size=32, progress=False)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["viz", "dataset", str(tmp_path / "reach"), "--episodes", "1"]) == 0
    out = tmp_path / "reach.rrd"  # the default: ./<dataset name>.rrd
    stdout = capsys.readouterr().out
    assert f"open it with: rerun {out}" in stdout
    ds, r = LeRobotDatasetReader(tmp_path / "reach"), Recording(out)
    n = ds.episode(1).length
    assert {e: r.rows(e) for e in r.entities()} == {
        **{f"episode_001/{e}": n for e in ("cameras/top", "state", "environment_state", "keypoints", "action",
                                            "expert_action", "reward", "done", "success")},
        "episode_001/instruction": 1,
        "episode_001/subtask": len({s for s in ds.episode_table(1)["subtask_index"]}),
    }
    assert r.column("episode_001/instruction", "TextLog:text") == [[ds.tasks[ds.episode_table(1)["task_index"][0]]]]
    assert [f.shape for f in r.images("episode_001/cameras/top")] == [(32, 32, 3)] * n


@pytest.mark.parametrize("args, message", [
    (["missing"], "missing: no such folder (expected a LeRobot dataset folder)"),
    (["empty"], "meta/info.json: missing (expected a LeRobot dataset folder)"),
    (["ds", "--episodes", "9"], "episode index 9 out of range (expected 0..1)"),
    (["ds", "--out", "."], ": is a folder (expected a .rrd file path)"),
])
def test_viz_dataset_cli_errors_are_one_line(two_camera_dataset, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "ds": two_camera_dataset, ".": tmp_path}
    argv = ["viz", "dataset"] + [str(paths.get(a, a)) for a in args]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("worldmot viz: error: ") and message in err, err


def test_viz_spawn_without_display_fails_before_writing(two_camera_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    out = tmp_path / "x.rrd"
    assert cli_main(["viz", "dataset", str(two_camera_dataset), "--out", str(out), "--spawn"]) == 2
    assert "no display" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as e:  # argparse: --serve and --spawn exclude each other
        cli_main(["viz", "dataset", str(two_camera_dataset), "--serve", "--spawn"])
    assert e.value.code == 2


def test_serve_binds_localhost_by_default():
    from worldmot.viz.viewer import serve_command

    cmd = serve_command(Path("x.rrd"))
    assert Path(cmd[0]).exists() and cmd[cmd.index("--bind") + 1] == "127.0.0.1" and "--serve-web" in cmd
    assert serve_command(Path("x.rrd"), bind="0.0.0.0")[cmd.index("--bind") + 1] == "0.0.0.0"


# ---------------------------------------------------------------------------------------------- episodes
def _frame(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_episode_recorder_entities_rows_and_plans(tmp_path):
    path = tmp_path / "eval.rrd"
    lengths, H, N, iters = (6, 4), 3, 8, 4
    rng = np.random.default_rng(0)
    with EpisodeRecorder(path, fps=10) as rec:
        for ep, n in enumerate(lengths):
            rec.start_episode(ep, f"reach target {ep}", goal_image=_frame(200))
            for t in range(n):
                imagined = np.stack([_frame(10 * (t + k) + 1, 16) for k in range(1, H + 1)])
                rec.log_step(t, _frame(10 * t), action_executed=[0.1 * t, -0.1], action_chosen=[0.2 * t, -0.2],
                             imagined_frames=imagined, candidate_costs=rng.random((iters, N)),
                             predicted_progress=t / n, reasoning=f"phase {t // 2}", success=t == n - 1 and ep == 0,
                             reward=1.0)
    r = Recording(path)
    assert r.has_footer
    for ep, n in enumerate(lengths):
        root = f"episode_{ep:03d}"
        expected = {**{e: n for e in ("camera", "action/executed", "action/chosen", "plan/imagined", "plan/real",
                                      "planner/cost", "planner/iterations", "planner/candidates", "progress",
                                      "reward", "success")},
                    "instruction": 1, "reasoning": (n + 1) // 2, "outcome": 1}
        assert {e[len(root) + 1:]: r.rows(e) for e in r.entities(root)} == expected
        assert r.timelines(f"{root}/camera") == {"step", "timestamp"}
        assert r.column(f"{root}/camera", "step") == list(range(n))
        assert [f.shape for f in r.images(f"{root}/camera")] == [(32, 32, 3)] * n
        assert not r.is_jpeg(f"{root}/camera")  # small frames stay raw
        assert r.images(f"{root}/goal")[0].mean() == 200
        assert r.column(f"{root}/action/executed", "SeriesLines:names", static=True) == [["executed[0]", "executed[1]"]]
        np.testing.assert_allclose(np.asarray(r.column(f"{root}/action/chosen", "Scalars:scalars"))[:, 0],
                                   0.2 * np.arange(n))
        assert [len(v) for v in r.column(f"{root}/planner/iterations", "BarChart:values")] == [1] * n
        assert r.column(f"{root}/outcome", "TextLog:text") == [["success" if ep == 0 else "failure"]]
        # imagined frames of the plan made at step t beside the real frames of steps t+1..t+H (black past the end)
        imagined, real = r.images(f"{root}/plan/imagined"), r.images(f"{root}/plan/real")
        assert imagined[0].shape == real[0].shape == (16, H * 16 + H - 1, 3)
        for t in range(n):
            tiles = lambda img: [int(img[:, k * 17:k * 17 + 16].mean()) for k in range(H)]
            assert tiles(imagined[t]) == [10 * (t + k) + 1 for k in range(1, H + 1)]
            assert tiles(real[t]) == [10 * (t + k) if t + k < n else 0 for k in range(1, H + 1)]
    assert r.column("summary/success", "Scalars:scalars") == [[1.0], [0.0]]
    assert r.column("summary/length", "Scalars:scalars") == [[6.0], [4.0]]
    assert r.column("summary/return", "Scalars:scalars") == [[6.0], [4.0]]
    assert r.timelines("summary/success") == {"episode"}
    key = "ContainerBlueprint:display_name"
    names = {c[key][0] for c in r.blueprint().values() if key in c}
    assert {"episode 0", "episode 1"} <= names


def test_episode_recorder_minimal_steps_and_jpeg_for_large_frames(tmp_path):
    path = tmp_path / "eval.rrd"
    handler = signal.getsignal(signal.SIGTERM)
    with EpisodeRecorder(path, images=ImagePolicy(jpeg_above_pixels=64 * 64)) as rec:
        rec.start_episode(3, "push the block")
        for t in range(3):
            rec.log_step(t, np.full((3, 96, 80), t / 3, np.float32), np.zeros(2))  # (3, H, W) float in [-1, 1]
    r = Recording(path)
    assert {e: r.rows(e) for e in r.entities("episode_003")} == {
        "episode_003/camera": 3, "episode_003/action/executed": 3, "episode_003/instruction": 1}
    assert r.timelines("episode_003/camera") == {"step"}
    assert r.is_jpeg("episode_003/camera") and [f.shape for f in r.images("episode_003/camera")] == [(96, 80, 3)] * 3
    assert signal.getsignal(signal.SIGTERM) is handler  # the recorder's SIGTERM handler is gone with it
    with pytest.raises(WorldmotError, match="recorder already closed"):
        rec.start_episode(4, "again")


def test_episode_recorder_errors(tmp_path):
    with EpisodeRecorder(tmp_path / "e.rrd") as rec:
        with pytest.raises(WorldmotError, match="no open episode"):
            rec.log_step(0, _frame(0), [0.0])
        rec.start_episode(0, "x")
        with pytest.raises(WorldmotError, match=r"imagined_frames: shape \[16, 16, 3\]"):
            rec.log_step(0, _frame(0), [0.0], imagined_frames=_frame(0, 16))
        with pytest.raises(WorldmotError, match="episode 0 was already recorded"):
            rec.start_episode(0, "x")


_KILLED_WRITER = textwrap.dedent("""
    import faulthandler, signal, sys, time
    import numpy as np
    faulthandler.register(signal.SIGUSR1)  # the test asks for the stacks when the process does not exit
    from worldmot.viz.episodes import EpisodeRecorder

    rec = EpisodeRecorder(sys.argv[1], flush_seconds=1e9)
    frame = np.zeros((32, 32, 3), np.uint8)
    rec.start_episode(0, "first")
    for t in range(5):
        rec.log_step(t, frame, [0.0, 1.0])
    rec.start_episode(1, "second")
    for t in range(3):
        rec.log_step(t, frame, [0.0, 1.0])
    rec.flush()  # written to the file
    for t in range(3, 5):
        rec.log_step(t, frame, [0.0, 1.0])  # buffered
    print("ready", flush=True)
    while True:
        time.sleep(0.01)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_episode_recording_survives_an_interrupted_process(tmp_path, sig):
    path = tmp_path / "eval.rrd"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()[-2000:]
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            pytest.fail(f"the writer did not exit within 30 s of {sig.name}; its stacks:\n{proc.stderr.read()[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = Recording(path)
    assert r.rows("episode_000/camera") == 5 and r.rows("episode_000/action/executed") == 5
    if sig == signal.SIGKILL:  # no exit code ran: the rows flushed before the kill are there, the buffered ones not
        assert r.rows("episode_001/camera") == 3
    else:  # SIGTERM and Ctrl-C end the process normally: buffered rows flushed, layout and footer written
        assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGINT), proc.returncode
        assert r.has_footer and r.rows("episode_001/camera") == 5
        assert r.column("summary/length", "Scalars:scalars") == [[5.0], [5.0]]
        assert r.blueprints


# ---------------------------------------------------------------------------------------------- training
def test_training_recorder_curves_validation_and_resume(tmp_path):
    run = tmp_path / "run"
    with TrainingRecorder(run) as rec:
        for step in (10, 20, 30):
            rec.log_metrics({"step": step, "loss": 1.0 / step, "ce": 0.5, "fm": float("nan"), "lr": 1e-3,
                             "tokens_per_s": 1000.0, "note": "text"})
        true = np.zeros((10, 2, 3, 8, 8), np.float32)  # 10 samples, 2 horizons, (3, S, S) in [-1, 1]
        pred = np.full((10, 2, 3, 8, 8), 0.5, np.float32)
        rec.log_validation(30, true, pred)
        rec.log_metrics({"step": 30, "split": "val", "psnr_1": 20.0, "copy_psnr_1": 18.0, "ssim_1": 0.5,
                         "action_acc": 0.9, "action_mae": 0.1})
    r = Recording(run / "train.rrd")
    assert r.has_footer
    assert {e: r.rows(e) for e in r.entities("curves")} == {
        "curves/loss/train/loss": 3, "curves/loss/train/ce": 3,  # fm: non-finite, skipped
        "curves/lr/train/lr": 3, "curves/throughput/train/tokens_per_s": 3,
        "curves/psnr/val/psnr_1": 1, "curves/psnr/val/copy_psnr_1": 1, "curves/ssim/val/ssim_1": 1,
        "curves/accuracy/val/action_acc": 1, "curves/error/val/action_mae": 1}
    assert r.column("curves/loss/train/loss", "step") == [10, 20, 30]
    assert r.column("curves/psnr/val/psnr_1", "SeriesLines:names", static=True) == [["val psnr_1"]]
    for name, value in (("true", 128), ("predicted", 191), ("error", 252)):
        [img] = r.images(f"validation/{name}")
        assert img.shape == (8 * 8 + 7, 2 * 8 + 1, 3)  # max_samples=8 rows, 2 horizon columns
        assert img[:8, :8].mean() == value, name
    assert metric_group("grad_norm") == "grad_norm" and metric_group("something") == "something"

    with TrainingRecorder(run, resume=True) as rec:  # a resumed run: train-1.rrd, the same recording id
        rec.log_metrics({"step": 40, "loss": 0.01})
    again = Recording(run / "train-1.rrd")
    assert again.recordings[0].recording_id == r.recordings[0].recording_id
    assert again.column("curves/loss/train/loss", "step") == [40]
    TrainingRecorder(run).close()  # a fresh run starts over
    assert sorted(p.name for p in run.glob("train*.rrd")) == ["train.rrd"]
    with pytest.raises(WorldmotError, match="differ"):
        with TrainingRecorder(tmp_path / "r2") as rec:
            rec.log_validation(1, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 9, 3), np.uint8))
