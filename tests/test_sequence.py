"""The packed sequence: the attention mask against the rules, layout invariants, the batch builder."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_fixtures import full_inputs, losses, make_batch, make_model, make_windows, small_config
from worldmot.sequence import FRAME, ROLE_NOISY, attention_mask, keypoint_cells, pack_windows
from worldmot.tokenizers.frames import _patchify
from worldmot.training.losses import sample_noise
from worldmot.training.metrics import token_predictions


def brute_force_mask(block, noisy, sample):
    """The mask rule of docs/DESIGN.md, pair by pair."""
    n = len(block)
    out = np.zeros((n, n), bool)
    for q in range(n):
        for k in range(n):
            same_sample = sample[q] == sample[k]
            earlier_or_same = block[k] <= block[q]
            hidden_noisy = noisy[k] and block[k] != block[q]
            out[q, k] = same_sample and earlier_or_same and not hidden_noisy
    return out


@st.composite
def random_layouts(draw):
    """Random packed rows: samples of causal tokens, frame blocks and noisy blocks in any order."""
    block, noisy, sample = [], [], []
    b = 0
    for s in range(draw(st.integers(1, 3))):
        for kind, size in draw(st.lists(st.tuples(st.sampled_from(["tok", "frame", "noisy"]), st.integers(1, 4)),
                                        min_size=1, max_size=8)):
            n = 1 if kind == "tok" else size
            block += [b] * n
            noisy += [kind == "noisy"] * n
            sample += [s] * n
            b += 1
    return np.array(block), np.array(noisy), np.array(sample)


@settings(max_examples=60, deadline=None)
@given(random_layouts())
def test_mask_equals_brute_force_reference(layout):
    block, noisy, sample = layout
    t = lambda a: torch.as_tensor(a)
    got = attention_mask(t(block), t(noisy), t(block), t(noisy), t(sample), t(sample)).numpy()
    np.testing.assert_array_equal(got, brute_force_mask(block, noisy, sample))


@pytest.mark.parametrize("cameras", [1, 2])
def test_window_layout_mask_matches_reference_and_hides_noisy_frames(cameras):
    model = make_model(small_config(cameras=cameras), randomize=False)
    lay = model.layout()
    P = model.tokens_per_frame
    assert lay.frames.shape == (lay.n_steps, cameras * P) and lay.noisy_frames.shape == (lay.n_steps - 1, cameras * P)
    for rows in (*lay.frames, *lay.noisy_frames):  # camera by camera, each its P patches in order
        np.testing.assert_array_equal(lay.camera[rows], np.repeat(np.arange(cameras), P))
        np.testing.assert_array_equal(lay.patch[rows], np.tile(np.arange(P), cameras))
        assert len(set(lay.block[rows])) == 1 and len(set(lay.pos[rows])) == 1  # one mask block, one position
    assert (lay.camera[lay.modality != FRAME] == -1).all()
    t = lambda a: torch.as_tensor(a)
    mask = attention_mask(t(lay.block), t(lay.noisy), t(lay.block), t(lay.noisy)).numpy()
    np.testing.assert_array_equal(mask, brute_force_mask(lay.block, lay.noisy, np.zeros_like(lay.block)))
    for j, rows in enumerate(lay.noisy_frames):  # noisy copy of f_{j+1}
        others = np.setdiff1d(np.arange(lay.length), rows)
        assert not mask[np.ix_(others, rows)].any(), "a token sees a noisy frame"
        assert mask[np.ix_(rows, rows)].all(), "a noisy frame is bidirectional inside itself"
        past = np.arange(rows[0])
        assert mask[np.ix_(rows, past[~lay.noisy[past]])].all(), "a noisy frame sees the whole clean past"
        assert not mask[rows][:, rows[-1] + 1 :].any(), "a noisy frame sees the future"
        clean = lay.frames[j + 1]
        np.testing.assert_array_equal(lay.pos[rows], lay.pos[clean])  # shares its clean copy's indices
        np.testing.assert_array_equal(lay.patch[rows], lay.patch[clean])
        np.testing.assert_array_equal(lay.camera[rows], lay.camera[clean])
    for rows in lay.frames:
        assert mask[np.ix_(rows, rows)].all()
    text = np.nonzero(lay.modality != FRAME)[0]
    sub = mask[np.ix_(text, text)]
    np.testing.assert_array_equal(sub, np.tril(np.ones_like(sub)))  # text/action/state tokens are causal


def test_pack_windows_places_every_field():
    model = make_model(randomize=False)
    batch = make_batch(model, B=2)
    lay, cfg, vocab = batch.layout, model.cfg.sequence, model.vocab
    ids = batch.token_ids.numpy()
    assert ids.shape == (2, lay.length) and (ids >= 0).all() and (ids < vocab.size).all()
    assert model.text_tokenizer.decode(ids[0, lay.instruction]) == "reach the red target"
    assert model.text_tokenizer.decode(ids[1, lay.reasoning[0]]) == "push it"
    bins = ids[0, lay.actions[0]] - vocab.action_offset
    assert ((bins >= 0) & (bins < cfg.action_bins)).all()
    assert ids[0, lay.progress[-1]] == vocab.special["<success>"]  # last step of the fixture succeeds
    assert (ids[0, lay.progress[:-1]] >= vocab.progress_offset).all()
    # targets: reasoning text + <eor>, action bins, progress; never the instruction or specials
    tm = batch.target_mask.numpy()
    assert not tm[:, lay.instruction].any()
    assert tm[0, lay.reasoning[0]].sum() == len("move to red") + 1
    assert tm[:, lay.actions.reshape(-1)].all() and tm[:, lay.progress].all()
    assert not tm[:, lay.role == ROLE_NOISY].any()


def test_condition_dropout_empties_instruction_and_reasoning():
    from model_fixtures import make_windows
    from worldmot.sequence import pack_windows

    model = make_model(randomize=False)
    windows, frames, _ = make_windows(model.cfg, 2)
    batch = pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                         action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames),
                         drop_instruction=np.array([True, False]), drop_reasoning=np.array([[True, False, False]] * 2))
    lay = batch.layout
    assert model.text_tokenizer.decode(batch.token_ids[0, lay.instruction].tolist()) == ""
    assert not batch.target_mask[:, lay.reasoning[0]].any()  # a dropped reasoning is not a target
    assert batch.target_mask[:, lay.reasoning[1]].any()


@given(st.floats(0, 1), st.floats(0, 1))
def test_keypoint_cell_is_the_patch_that_holds_the_pixel(u, v):
    cfg = make_model().cfg.sequence  # 16x16 frames, 4x4 patches
    cell = int(keypoint_cells(np.array([u, v], np.float32), cfg)[0])
    S, p = cfg.image_size, cfg.patch_size
    patches = _patchify(torch.arange(S * S, dtype=torch.float32).reshape(1, S, S), p)  # pixel ids per patch
    row, col = min(int(np.float32(v) * S), S - 1), min(int(np.float32(u) * S), S - 1)
    assert row * S + col in patches[cell].tolist()


def one_keypoint_batch(model):
    """Two windows of 3 frames whose one keypoint goes top-left, top-right, bottom-right; the last frame padded."""
    windows, frames, _ = make_windows(model.cfg, B=2)
    for w in windows:
        w["keypoints"] = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], np.float32)
        w["frame_is_pad"] = np.array([False, False, True])
    return pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                        action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames))


def test_keypoints_are_packed_per_frame_and_unknown_past_the_episode_end():
    model = make_model(small_config(keypoints=1), randomize=False)
    batch = one_keypoint_batch(model)
    assert batch.keypoint_cells[:, :, 0].tolist() == [[0, 3, -1]] * 2  # 4x4 grid: top-left, top-right, padded
    loss = losses(model, batch, generator=torch.Generator().manual_seed(0))
    # zero-initialised heads: uniform over the 16 patches, every object at its patch's centre (0.1 patch
    # widths off in u and in v) and read at the image centre (0.4 off in u and v), the padded frame not counted
    assert float(loss["kp"].detach()) == pytest.approx(np.log(16) + 10 * 0.02 + 10 * 0.32, rel=1e-4)
    loss["kp"].backward()
    assert model.keypoint_head.weight.grad.abs().sum() > 0 and model.object_head.bias.grad.abs().sum() > 0


def test_each_eoa_learns_where_the_keypoints_will_be_in_the_next_frame():
    cfg = small_config(keypoints=1)
    cfg.lambda_keypoint_ahead = 0.5
    model = make_model(cfg, randomize=False)
    loss = losses(model, one_keypoint_batch(model), generator=torch.Generator().manual_seed(0))
    # the clean frames' terms as above, plus half of 10x: the squared error of the placement corrected with
    # the state (the zero head keeps the patches' answer, the first patch's centre (0.125, 0.125): f_0 at
    # (0.1, 0.1), f_1 at (0.9, 0.1), mean over both), plus that of f_1's position predicted at [EOA] after a_0
    # from f_0's true one (the zero head says no change: 0.8 off in u); f_2 is padded
    placed = (2 * 0.025 ** 2 + 0.775 ** 2 + 0.025 ** 2) / 2
    expected = np.log(16) + 10 * 0.02 + 10 * 0.32 + 0.5 * 10 * (placed + 0.64)
    assert float(loss["kp"].detach()) == pytest.approx(expected, rel=1e-4)
    loss["kp"].backward()
    head = model.ahead_head
    assert head.motion[-1].weight.grad.abs().sum() > 0 and head.placement[-1].weight.grad.abs().sum() > 0


def test_each_boa_learns_where_the_objects_are_on_its_frame():
    """model.lambda_keypoint_boa adds the (u, v) read-out at each step's [BOA], the position that predicts the
    chunk's first action bin, against that step's frame's keypoints (the padded frame not counted)."""
    model = make_model(small_config(keypoints=1))
    batch = one_keypoint_batch(model)
    without = losses(model, batch, generator=torch.Generator().manual_seed(0))["kp"]
    model.cfg.lambda_keypoint_boa = 0.5
    with_boa = losses(model, batch, generator=torch.Generator().manual_seed(0))["kp"]
    lay = batch.layout
    h, _ = model.run(lay.segment(0, lay.length), full_inputs(batch))  # clean positions never see noisy frames
    read = model.read_objects(h[:, torch.as_tensor(lay.actions[:, 0] - 1)])  # (B, K, 1, 2)
    uv, valid = batch.keypoints.view(2, 3, 1, 2), batch.keypoint_cells >= 0
    expected = 0.5 * 10 * ((read - uv) ** 2).sum(-1)[valid].mean()
    assert float((with_boa - without).detach()) == pytest.approx(float(expected.detach()), rel=1e-4)


def ahead_model_and_context(keypoints: int = 2):
    """A randomised model with the keypoints-ahead head, and two first frames' tokens and states."""
    cfg = small_config(keypoints=keypoints)
    cfg.lambda_keypoint_ahead = 1.0
    model = make_model(cfg)
    _, frames, states = make_windows(model.cfg, B=2)
    return model, model.tokenize_frames(frames[:, 0]), torch.as_tensor(states[:, 0])


def test_imagination_reports_where_the_objects_are_and_will_be_once_a_chunk_is_written():
    from worldmot.model import imagination

    model, tokens, state = ahead_model_and_context()
    cfg, head = model.cfg, model.ahead_head
    with torch.no_grad():  # whatever the inputs, the head says: no correction, nothing moves
        for layer in (head.placement[-1], head.motion[-1]):
            layer.weight.zero_(), layer.bias.zero_()
    by_patches = imagination.start(model, ["a", "b"], tokens, state).objects
    with torch.no_grad():  # object 0 lies 0.1 further right than the patches say and stays; object 1 moves
        head.placement[-1].bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0]))
        head.motion[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.25, -0.25]))
    im = imagination.start(model, ["a", "b"], tokens, state)
    assert im.ahead is None  # no chunk written yet
    torch.testing.assert_close(im.objects, by_patches + torch.tensor([[0.1, 0.0], [0.0, 0.0]]))
    expected = im.objects + torch.tensor([[0.0, 0.0], [0.25, -0.25]])
    imagination.write_step(im, torch.zeros(2, cfg.sequence.chunk, cfg.sequence.action_dim))  # given actions
    torch.testing.assert_close(im.ahead, expected)
    im = imagination.start(model, ["a", "b"], tokens, state)
    imagination.write_step(im, None)  # actions decoded by the AR policy
    torch.testing.assert_close(im.ahead, expected)


def test_a_dropped_state_does_not_reach_the_prediction_ahead():
    cfg = small_config(keypoints=1)
    cfg.lambda_keypoint_ahead = 1.0
    model = make_model(cfg)  # randomised: the head's every input carries signal
    batch = one_keypoint_batch(model)
    kp = lambda b: float(losses(model, b, generator=torch.Generator().manual_seed(0))["kp"].detach())
    dropped = replace(batch, state_dropped=torch.ones_like(batch.state_dropped))
    # the trunk sees the learned "no state" embedding and the head a zero state with its flag off
    assert kp(replace(dropped, states=dropped.states + 1.0)) == kp(dropped)
    assert kp(replace(batch, states=batch.states + 1.0)) != kp(batch)


def test_imagination_predicts_ahead_from_the_given_state_until_a_frame_is_imagined():
    from worldmot.model import imagination

    model, tokens, state = ahead_model_and_context()
    chunk = torch.full((2, model.cfg.sequence.chunk, model.cfg.sequence.action_dim), 0.5)

    def written(state, chunk):
        im = imagination.start(model, ["a", "b"], tokens, state, horizon=2)
        imagination.write_step(im, chunk)
        return im

    im = written(state, chunk)
    torch.testing.assert_close(im.given_state, model.normalize_state(state))
    assert (im.ahead - written(state, -chunk).ahead).abs().max() > 1e-4  # the chunk moves the prediction
    assert written(None, chunk).given_state is None
    imagination.imagine_frame(im)
    assert im.given_state is None and im.ahead is not None  # imagined frames carry no state
    imagination.write_step(im, chunk)
    assert im.ahead.shape == (2, 2, 2)


def test_objects_are_located_at_the_likeliest_patch_plus_its_offset():
    model = make_model(small_config(keypoints=2), randomize=False)  # 4x4 patches
    D, N = model.keypoint_head.in_features, 2
    with torch.no_grad():  # the head copies the first 3N hidden dims: logits of N objects, then N (du, dv)
        model.keypoint_head.weight.zero_()
        model.keypoint_head.weight[:, : 3 * N] = torch.eye(3 * N)
        model.keypoint_head.bias.zero_()
    hidden = torch.zeros(16, D)
    hidden[6, 0] = 5.0  # object 0 in patch 6 (row 1, column 2), a quarter patch right and up of its centre
    hidden[6, 2:4] = torch.tensor([0.25, -0.25])
    hidden[13, 1] = 5.0  # object 1 in patch 13 (row 3, column 1), offsets beyond the patch are clamped
    hidden[13, 4:6] = torch.tensor([-2.0, 0.0])
    uv = model.locate_objects(hidden[None])[0]
    torch.testing.assert_close(uv, torch.tensor([[(2 + 0.75) / 4, (1 + 0.25) / 4], [(1 + 0.0) / 4, (3 + 0.5) / 4]]))


def test_expert_actions_are_taught_while_the_executed_actions_condition_the_frames():
    """Windows with "expert_actions": the action tokens the model reads stay the executed ones (the frames
    follow them), the CE targets become the expert's bins; the frame loss is unchanged, the CE is not."""
    model = make_model()
    cfg = model.cfg.sequence
    windows, frames, states = make_windows(model.cfg, B=2)
    relabelled = [{**w, "expert_actions": -w["actions"]} for w in windows]
    pack = lambda ws: pack_windows(ws, cfg=cfg, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                                   action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames),
                                   states=torch.as_tensor(states))
    plain, taught = pack(windows), pack(relabelled)
    acts = plain.layout.actions.reshape(-1)
    assert torch.equal(plain.target_ids, plain.token_ids) and torch.equal(taught.token_ids, plain.token_ids)
    expert_bins = model.action_tokenizer.encode(torch.as_tensor(np.stack([w["expert_actions"] for w in relabelled])))
    assert torch.equal(taught.target_ids[:, acts] - model.vocab.action_offset, expert_bins.reshape(2, -1))
    others = np.setdiff1d(np.arange(plain.layout.length), acts)
    assert torch.equal(taught.target_ids[:, others], plain.token_ids[:, others])
    t, noise = sample_noise(model, 2, cfg.n_steps, torch.Generator().manual_seed(0))
    a, b = losses(model, plain, t=t, noise=noise), losses(model, taught, t=t, noise=noise)
    assert torch.equal(a["fm"], b["fm"]) and torch.equal(a["st"], b["st"])
    assert not torch.allclose(a["ce"], b["ce"])
    _, target = token_predictions(model, taught)["action"]
    assert torch.equal(target, taught.target_ids[:, acts].reshape(-1))
