"""Several cameras end to end: the resize rules, training on two cameras of different non-square sizes, imagining
and planning over both, viewing both; one camera named or recorded stays the one-camera model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import worldmot
from datasets_helpers import features, pixel, write_dataset
from rrd_helpers import Recording
from test_training import overrides
from worldmot.datasets.windows import WindowDataset, collate_windows
from worldmot.errors import WorldmotError
from worldmot.model import imagination
from worldmot.planning import PlannerConfig
from worldmot.policies.planner import PlannerPolicy
from worldmot.tokenizers.frames import fit_frames, fit_points
from worldmot.training.loop import train
from worldmot.training.settings import load_train_config
from worldmot.viz.dataset import dataset_to_rrd

TOP, WRIST = "observation.images.top", "observation.images.wrist"


def test_crop_keeps_the_centred_square_and_letterbox_the_whole_frame():
    frame = np.zeros((8, 16, 3), np.uint8)
    frame[:, :4], frame[:, 4:12], frame[:, 12:] = 50, 100, 200  # left strip, centre square, right strip
    crop = fit_frames(frame, 8, "crop")[0]
    assert (crop == 100).all()  # the strips beside the centred square are cut off
    box = fit_frames(frame, 8, "letterbox")[0]  # 8x16 -> 4x8 between black bars of 2 rows
    assert (box[:2] == 0).all() and (box[6:] == 0).all()
    np.testing.assert_array_equal(box[2:6, :, 0], np.repeat([[50] * 2 + [100] * 4 + [200] * 2], 4, 0))
    square = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    for rule in ("crop", "letterbox"):  # a frame of the model's size is taken as it is
        np.testing.assert_array_equal(fit_frames(square, 8, rule), square)
    with pytest.raises(WorldmotError, match=r"resize='stretch'"):
        fit_frames(square, 8, "stretch")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(6, 40), w=st.integers(6, 40), fy=st.floats(0.05, 0.95), fx=st.floats(0.05, 0.95),
       rule=st.sampled_from(["crop", "letterbox"]))
def test_a_point_lands_where_the_fitted_frame_shows_it(h, w, fy, fx, rule):
    """fit_points moves an image point to where fit_frames draws that spot of the image (within a pixel)."""
    y, x = int(fy * h), int(fx * w)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[y, x] = 255
    S = 32
    u, v = fit_points(np.array([(x + 0.5) / w, (y + 0.5) / h]), h, w, S, rule)
    fitted = fit_frames(frame, S, rule)[0, ..., 0].astype(float)
    if fitted.sum() == 0:  # cropped away (or shrunk to nothing): the point is outside the square
        assert rule == "crop" and not (0 <= u <= 1 and 0 <= v <= 1)
        return
    ys, xs = np.nonzero(fitted)
    cy, cx = (np.average(ys, weights=fitted[ys, xs]) + 0.5) / S, (np.average(xs, weights=fitted[ys, xs]) + 0.5) / S
    assert abs(u - cx) * S <= 1.0 and abs(v - cy) * S <= 1.0, (u * S, cx * S, v * S, cy * S)


def test_keypoints_of_a_non_square_camera_are_where_the_model_sees_them(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [6], features(size=(16, 24), keypoints=1))  # 16 high, 24 wide
    raw = WindowDataset(root, n_steps=1, chunk=1).reader.episode_table(0, ["observation.keypoints"])
    u, v = np.asarray(raw["observation.keypoints"][0])
    # crop: the centred 16x16 of the 24 columns; letterbox at 12: 12x8 between bars of 2 rows
    for rule, expected in {"crop": [(u * 24 - 4) / 16, v], "letterbox": [u, (v * 8 + 2) / 12]}.items():
        got = WindowDataset(root, n_steps=1, chunk=1, image_size=12, resize=rule)[0]["keypoints"][0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory) -> Path:
    """top 16x24 and wrist 12x20: two non-square cameras of different sizes."""
    root = tmp_path_factory.mktemp("cams") / "ds"
    feats = features(cams=("top", "wrist"), size=(16, 24))
    feats[WRIST]["shape"] = [12, 20, 3]
    write_dataset(root, [12, 10, 14, 9], feats)
    return root


def test_windows_of_two_cameras_stack_each_fitted_to_the_model_size(two_cameras):
    ds = WindowDataset(two_cameras, n_steps=2, chunk=2, cameras=[TOP, WRIST], image_size=16, resize="letterbox")
    s = ds[0]
    assert s["frames"].shape == (2, 2, 16, 16, 3) and s["frames"].dtype == torch.uint8
    for cam in (0, 1):  # the grey level of each camera inside its bars
        assert abs(int(s["frames"][0, cam, 8, 8, 0]) - pixel(0, 0, cam)) <= 3
    assert (s["frames"][0, 1, 0] == 0).all()  # the wrist's 12x20 letterboxed: black rows on top
    assert collate_windows([s, ds[1]])["frames"].shape == (2, 2, 2, 16, 16, 3)
    with pytest.raises(WorldmotError, match="several cameras need image_size"):
        WindowDataset(two_cameras, cameras=[TOP, WRIST])


def test_two_cameras_train_imagine_plan_and_show(two_cameras, tmp_path):
    run = tmp_path / "run"
    train(load_train_config(overrides(two_cameras, run, "steps=2", "checkpoint_every=2", "val.every=2",
                                      "model.sequence.resize=letterbox")))
    model = worldmot.load(run)
    assert model.cfg.sequence.cameras == 2 and model.cfg.sequence.resize == "letterbox"
    assert model.trained_on["cameras"] == [TOP, WRIST] and model.camera_embed.shape == (2, model.cfg.width)
    val = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    assert val and '"psnr_1"' in val[-1]

    rng = np.random.default_rng(0)
    views = [rng.integers(0, 256, (2, 16, 24, 3), dtype=np.uint8), rng.integers(0, 256, (2, 12, 20, 3), dtype=np.uint8)]
    tokens = model.tokenize_frames(views)  # (B, Nc*P, Dp)
    assert tokens.shape[1] == 2 * model.tokens_per_frame
    frames, progress = imagination.rollout(model, ["task 0"] * 2, tokens, torch.zeros(2, 2, 2, 2))
    assert frames.shape == (2, 2, *tokens.shape[1:]) and progress.shape == (2, 3)

    policy = PlannerPolicy(model, PlannerConfig(candidates=4, elites=2, iterations=1), -np.ones(2), np.ones(2))
    obs = {"pixels": {"wrist": views[1], "top": views[0]}, "agent_pos": np.zeros((2, 3), np.float32),
           "task": ["task 0", "task 1"]}
    assert policy.act(obs).shape == (2, 2)  # the cameras by the names the model folder records, in its order

    out = tmp_path / "ds.rrd"
    dataset_to_rrd(two_cameras, out, episodes=[0], progress=False)
    r = Recording(out)
    assert [f.shape for f in r.images("episode_000/cameras/top")[:1]] == [(16, 24, 3)]
    assert [f.shape for f in r.images("episode_000/cameras/wrist")[:1]] == [(12, 20, 3)]


def test_one_named_camera_trains_the_one_camera_model(two_cameras, tmp_path):
    run = tmp_path / "run"
    train(load_train_config(overrides(two_cameras, run, "steps=1", "checkpoint_every=1", "val.every=1",
                                      "val.full=false", f"data.camera={WRIST}")))
    model = worldmot.load(run)
    assert model.cfg.sequence.cameras == 1 and model.camera_embed is None
    assert model.trained_on["cameras"] == [WRIST]
    with pytest.raises(WorldmotError, match=r"data\.cameras: 'observation\.images\.side' is not a camera"):
        train(load_train_config(overrides(two_cameras, tmp_path / "bad", "steps=1", f"data.cameras=[{TOP},observation.images.side]")))
