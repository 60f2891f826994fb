"""``worldmot train``: exact resume after SIGKILL, DDP on 2 CPU processes, non-finite loss, bad input."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import worldmot
from datasets_helpers import features, write_dataset
from worldmot.cli import main as cli_main
from worldmot.errors import WorldmotError
from worldmot.model.world_model import WorldModel
from worldmot.training.settings import load_train_config
from worldmot.training import checkpoints as ckpt
from worldmot.training.loop import train
from worldmot.training.losses import WorldModelLoss
from worldmot.training.metrics import reasoning_position_error

# A model small enough that a step takes milliseconds; everything else is the default tiny run.
SMALL = ["model.width=32", "model.depth=2", "model.heads=2", "model.mlp_ratio=2.0", "model.sequence.image_size=16",
         "model.sequence.patch_size=4", "model.sequence.instruction_len=16", "model.sequence.reasoning_len=8",
         "model.sequence.action_bins=32", "model.sequence.chunk=2", "batch_size=4", "data.num_workers=0",
         "log_every=1", "val.batches=1", "threads=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "ds"
    write_dataset(root, [14, 11, 16, 9, 12], features(size=(16, 16)))
    return root


def overrides(dataset: Path, run: Path, *extra: str) -> list[str]:
    return [f"data.root={dataset}", f"run_dir={run}", *SMALL, *extra]


def train_losses(run: Path) -> list[tuple[int, float, float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["ce"], r["fm"]) for r in rows if "loss" in r]


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "worldmot", "train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]


# ----------------------------------------------------------------------------------------------------
# Resume
# ----------------------------------------------------------------------------------------------------

def test_sigkill_then_resume_gives_the_uninterrupted_loss_sequence(dataset, tmp_path):
    steps = ["steps=24", "checkpoint_every=3", "val.every=12"]
    full = tmp_path / "full"
    finish(cli(*overrides(dataset, full, *steps)))

    run = tmp_path / "killed"
    for kill_after in (4, 13):  # two kills, at different points of the run
        proc = cli(*overrides(dataset, run, *steps), *(["--resume"] if ckpt.list_checkpoints(run) else []))
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").exists() and len(train_losses(run)) >= kill_after:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert ckpt.list_checkpoints(run), "no complete checkpoint after the kill"
    finish(cli(*overrides(dataset, run, *steps), "--resume"))

    assert train_losses(run) == train_losses(full)  # bit for bit: same windows, noise, RNG and optimiser state
    a, b = load_file(str(full / "model/model.safetensors")), load_file(str(run / "model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((run / "checkpoints").glob(".*"))


def test_corrupt_checkpoint_is_reported_not_loaded(dataset, tmp_path):
    run = tmp_path / "run"
    train(load_train_config(overrides(dataset, run, "steps=4", "checkpoint_every=2", "val.every=4")))
    newest = ckpt.latest_checkpoint(run)
    data = bytearray((newest / "optim.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "optim.safetensors").write_bytes(bytes(data))
    with pytest.raises(WorldmotError, match=r"optim\.safetensors: checksum mismatch"):
        train(load_train_config(overrides(dataset, run, "steps=6", "checkpoint_every=2")), resume=True)
    (newest / "state.json").unlink()  # a folder without its state is incomplete: also reported
    with pytest.raises(WorldmotError, match=r"state\.json: missing"):
        ckpt.load_checkpoint(newest)


def test_run_folder_holds_a_loadable_model_curves_and_validation(dataset, tmp_path):
    run = tmp_path / "run"
    train(load_train_config(overrides(dataset, run, "steps=6", "checkpoint_every=3", "val.every=3")))
    model = worldmot.load(run)
    assert isinstance(model, WorldModel) and model.cfg.sequence.action_dim == 2 and model.cfg.sequence.state_dim == 3
    assert (run / "curves.png").stat().st_size > 1000
    val = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in l]
    assert [r["step"] for r in val] == [3, 6]
    for key in ("psnr_1", "ssim_1", "copy_psnr_1", "psnr_2", "psnr_4", "action_acc", "action_mae", "reasoning_acc",
                "psnr_1_wrong_actions", "policy_action_mae", "policy_action_mae_const", "policy_progress_mae",
                "val_st", "val_kp", "state_r2"):
        assert key in val[-1]
    # the saved model carries the last validation's read-out R^2 per state dimension (the planner's weights)
    assert model.state_read_r2.shape == (3,) and not torch.equal(model.state_read_r2, torch.ones(3))
    assert float(model.state_read_r2.mean()) == pytest.approx(val[-1]["state_r2"], abs=1e-5)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000003", "step_00000006"]


def test_keypoint_loss_on_a_named_feature_the_dataset_lacks_is_a_one_line_error(dataset, tmp_path):
    with pytest.raises(WorldmotError, match=r"model\.lambda_keypoint=0\.5 needs the feature 'observation\.points'"):
        train(load_train_config(overrides(dataset, tmp_path / "run", "steps=2", "model.lambda_keypoint=0.5",
                              "data.keypoint_key=observation.points")))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_expert_actions_under_a_named_feature_the_dataset_lacks_is_a_one_line_error(dataset, tmp_path):
    with pytest.raises(WorldmotError, match=r"no feature 'teacher\.action' \(data\.expert_action_key"):
        train(load_train_config(overrides(dataset, tmp_path / "run", "steps=2", "data.expert_action_key=teacher.action")))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_dataset_without_keypoints_trains_without_the_keypoint_loss(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_train_config(overrides(dataset, run, "steps=2", "checkpoint_every=2", "val.every=2", "model.lambda_keypoint=0.5")))
    assert "no 'observation.keypoints'; training without the keypoint loss" in capsys.readouterr().out
    model = worldmot.load(run)
    assert model.keypoint_head is None and model.cfg.lambda_keypoint == 0.0  # the saved config says what ran


def test_validation_reports_where_the_model_puts_the_keypoints_one_step_ahead(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [10, 12, 9, 11, 10], features(size=(16, 16), keypoints=2))
    run = tmp_path / "run"
    train(load_train_config(overrides(root, run, "steps=2", "checkpoint_every=2", "val.every=2", "model.lambda_keypoint=0.5",
                          "model.lambda_keypoint_ahead=1.0")))
    assert worldmot.load(run).ahead_head is not None
    val = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in l][-1]
    # the points move 0.05 of 16 px per recorded frame and a step is a chunk of 2: f_0's positions are 1.6 px off f_1's
    assert val["object_err_px_still"] == pytest.approx(1.6, abs=1e-3)
    for key in ("imagined_object_err_px", "ahead_object_err_px"):
        assert math.isfinite(val[key]) and val[key] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_training_on_cuda_without_a_gpu_is_a_one_line_error(dataset, tmp_path):
    with pytest.raises(WorldmotError, match=r"device=cuda: this torch sees no CUDA device \(use device=cpu or auto\)"):
        train(load_train_config(overrides(dataset, tmp_path / "run", "steps=2", "device=cuda")))
    assert not (tmp_path / "run").exists()


def test_reasoning_position_error_counts_texts_without_a_position():
    true = ["move to red at +10,+00", "move to blue at -20,+30", "move to cyan at +00,+00", "no position"]
    said = ["move to red at +13,+04", "move to blue", "move to cyan at +00,-10", "move to red at +50,+50"]
    out = reasoning_position_error(said, true)
    assert out["policy_reasoning_named"] == pytest.approx(2 / 3)  # the 4th true text names nothing: not counted
    assert out["policy_reasoning_pos_err"] == pytest.approx((0.05 + 0.10) / 2)
    assert reasoning_position_error(said, ["move to the red target"] * 4) == {}


# ----------------------------------------------------------------------------------------------------
# More than one process
# ----------------------------------------------------------------------------------------------------

def test_ddp_two_processes_match_one_process(dataset, tmp_path):
    steps = ["steps=6", "checkpoint_every=6", "val.every=6", "optim.ema_decay=0.0"]
    one = tmp_path / "one"
    finish(cli(*overrides(dataset, one, *steps)))
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    # its own session, so that a hang kills torchrun's workers too, not only the launcher
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "worldmot", "train", *overrides(dataset, two, *steps)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    l1, l2 = train_losses(one), train_losses(two)
    assert [r[0] for r in l1] == [r[0] for r in l2]
    for r1, r2 in zip(l1, l2):  # per-rank token means averaged vs one global mean: close, not equal
        assert r2[1] == pytest.approx(r1[1], rel=2e-2)
    w1, w2 = load_file(str(one / "model/model.safetensors")), load_file(str(two / "model/model.safetensors"))
    # the read-out R^2 is a ratio measured on the validation batch (-17 for this untrained model): relative
    r2_one, r2_two = w1.pop("state_read_r2"), w2.pop("state_read_r2")
    torch.testing.assert_close(r2_two, r2_one, rtol=2e-2, atol=1e-3)
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert diff < 2e-3, f"2-process weights differ from 1-process weights by {diff}"


# ----------------------------------------------------------------------------------------------------
# Failures
# ----------------------------------------------------------------------------------------------------

def test_non_finite_loss_stops_with_step_and_part(dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    forward = WorldModelLoss.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # the fifth step
            out = {**out, "fm": out["fm"] * float("nan")}
            out["loss"] = out["ce"] + out["fm"]
        return out

    monkeypatch.setattr(WorldModelLoss, "forward", poisoned)
    with pytest.raises(WorldmotError, match=r"step 5: non-finite fm loss.*step_00000004"):
        train(load_train_config(overrides(dataset, run, "steps=8", "checkpoint_every=2", "val.every=100")))
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000002", "step_00000004"]
    ckpt.load_checkpoint(ckpt.latest_checkpoint(run))  # the last good checkpoint is intact


@pytest.mark.parametrize("args, message", [
    (["run_dir=/tmp/x"], "data.root"),
    (["data.root=/nonexistent/ds", "run_dir=/tmp/x"], "/nonexistent/ds"),
    (["steps=ten"], "steps"),
    (["no_such_key=1"], "no_such_key"),
    (["optim.nope=1"], "optim.nope"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "compile=true", "compile_scope=model"], "compile_scope='model'"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "attention=ring"], "attention='ring'"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "attention=flex"], "compile=true"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "attention=flex", "compile=true", "device=cpu"], "CUDA only"),
    # values the run cannot use: named before the dataset is read (/tmp/x does not exist)
    (["data.root=/tmp/x", "run_dir=/tmp/x", "batch_size=0"], "batch_size=0: expected >= 1"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "optim.lr=-1"], "optim.lr=-1.0: expected > 0"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "val.horizons=[]"], "val.horizons=[]"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "data.val_fraction=1.0"], "data.val_fraction=1.0"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "model.heads=3"], "model.heads=3: expected a divisor of model.width (128)"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "model.attention_query_tile=-1"], "model.attention_query_tile=-1"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "model.drop_state=1.5"], "model.drop_state=1.5: expected a fraction"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "model.sequence.patch_size=7"], "model.sequence.patch_size=7: expected a divisor"),
    (["data.root=/tmp/x", "run_dir=/tmp/x", "model.sequence.n_steps=1"], "model.sequence.n_steps=1: expected >= 2"),
])
def test_cli_bad_input_is_one_line_and_non_zero(args, message, capsys):
    assert cli_main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_dataset_without_the_action_feature(dataset, tmp_path):
    with pytest.raises(WorldmotError, match=r"info\.json: no feature 'actions'"):
        train(load_train_config(overrides(dataset, tmp_path / "run", "data.action_key=actions")))
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_resume_without_checkpoint_and_reuse_of_a_run_folder(dataset, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(WorldmotError, match="no checkpoint to resume from"):
        train(load_train_config(overrides(dataset, run, "steps=2")), resume=True)
    train(load_train_config(overrides(dataset, run, "steps=2", "checkpoint_every=2", "val.every=2")))
    with pytest.raises(WorldmotError, match="not empty, holds checkpoints"):
        train(load_train_config(overrides(dataset, run, "steps=2")))


def test_corrupt_video_met_in_a_loader_worker_is_one_line(dataset, tmp_path, capsys):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    video = next(root.glob("videos/**/*.mp4"))
    video.write_bytes(video.read_bytes()[:200] + b"\0" * 4000)
    args = overrides(root, tmp_path / "run", "steps=2", "data.num_workers=2")
    assert cli_main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and video.name in err and "Traceback" not in err, err


def test_error_from_a_loader_worker_prints_its_own_line():
    from torch._utils import ExceptionWrapper

    from worldmot.cli import one_line

    try:
        raise WorldmotError("ds/videos/file-000.mp4: not a readable MP4")
    except WorldmotError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(WorldmotError) as info:
        wrapped.reraise()
    assert "Traceback" in str(info.value)
    assert one_line(info.value) == "ds/videos/file-000.mp4: not a readable MP4"


def test_rerun_flag_writes_curves_and_validation_frames(dataset, tmp_path):
    from test_viz import Recording

    run = tmp_path / "run"
    train(load_train_config(overrides(dataset, run, "steps=4", "checkpoint_every=4", "val.every=2", "rerun=true")))
    rec = Recording(run / "train.rrd")
    assert rec.has_footer
    assert rec.rows("curves/loss/train/loss") == 4 and rec.rows("curves/psnr/val/psnr_1") == 2
    true, pred = rec.images("validation/true"), rec.images("validation/predicted")
    assert len(true) == len(pred) == 2 and true[0].shape == pred[0].shape and true[0].shape[2] == 3


def test_ema_follows_early_training_then_settles_to_its_decay():
    """EMA warm-up: decay min(d, (1 + n) / (10 + n)); a fixed 0.995 left short runs' EMA near the start. The
    count the host keeps follows a load: an EMA restored halfway continues as the uninterrupted one."""
    from worldmot.training.ema import WarmupEMA

    param = torch.nn.Parameter(torch.zeros(1))
    module = torch.nn.ParameterList([param])
    ema = WarmupEMA(module, 0.9)
    expected = 0.0
    for n in range(40):
        with torch.no_grad():
            param.fill_(float(n + 1))
        if n == 20:
            state = ema.state_dict()
            ema = WarmupEMA(module, 0.9)
            ema.load_state_dict(state)
        ema.update_parameters(module)
        if n == 0:
            expected = 1.0  # the first update copies
        else:
            d = min(0.9, (1 + n) / (10 + n))
            expected = d * expected + (1 - d) * (n + 1)
        assert float(ema.module[0].detach()) == pytest.approx(expected, rel=1e-6)


def test_reasoning_is_dropped_for_a_whole_window_not_step_by_step():
    """A policy decides from a fresh frame with no reasoning in its context: if a window kept an earlier step's
    reasoning (which names the target's position), its actions could copy it instead of reading the frame."""
    from model_fixtures import make_model, make_windows
    from worldmot.sequence import pack_windows
    from worldmot.training.config import TrainConfig
    from worldmot.training.loop import step_randomness

    model = make_model(randomize=False)
    model.cfg.drop_reasoning = 0.5
    cfg = TrainConfig(run_dir="unused", batch_size=64, model=model.cfg)
    windows, frames, _ = make_windows(model.cfg, cfg.batch_size)
    drops = step_randomness(model, cfg, step=3, rows=slice(None))
    batch = pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                         action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames),
                         drop_reasoning=drops["drop_reasoning"])
    kept = torch.stack([batch.target_mask[:, r].any(1) for r in batch.layout.reasoning], 1)  # (B, K)
    assert (kept.all(1) | ~kept.any(1)).all(), "a window kept some steps' reasoning and dropped others"
    assert 0 < int((~kept.any(1)).sum()) < cfg.batch_size  # both cases occur at p = 0.5
