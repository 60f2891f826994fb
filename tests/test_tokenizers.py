"""Tokenizers: text (bytes, tokenizers file), actions (bins, chunks), frames (preprocess, patches, latents)."""
from __future__ import annotations

import functools
import json
import os
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from worldmot.errors import WorldmotError
from worldmot.tokenizers import (
    SPECIAL_TOKENS,
    ActionTokenizer,
    ByteTokenizer,
    LatentTokenizer,
    PatchTokenizer,
    chunk_actions,
    make_frame_tokenizer,
    make_text_tokenizer,
    preprocess_frames,
    to_uint8,
    unchunk_actions,
)
from worldmot.training.vae import train_latent_tokenizer
from worldmot.viz.overlay import draw_overlay

torch.set_num_threads(1)

# =====================================================================================================
# Text
# =====================================================================================================

BYTES = ByteTokenizer()


@given(st.text())
def test_byte_round_trip_any_unicode(text):
    ids = BYTES.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert BYTES.decode(ids) == text


@given(st.text(), st.integers(0, 64))
def test_byte_truncation_keeps_whole_characters(text, max_len):
    ids = BYTES.encode(text, max_len=max_len)
    assert len(ids) <= max_len
    decoded = bytes(ids).decode("utf-8")  # strict: raises if a character was split
    assert text.startswith(decoded)
    # as long as possible: the next character would not have fitted
    rest = text[len(decoded) :]
    if rest:
        assert len(ids) + len(rest[0].encode("utf-8")) > max_len


@given(st.text(), st.integers(1, 40))
def test_byte_padded_length_exact(text, length):
    out = BYTES.encode_padded(text, length)
    assert out.dtype == np.int64 and out.shape == (length,)
    n = len(BYTES.encode(text, max_len=length))
    assert (out[n:] == BYTES.pad_id).all()
    assert text.startswith(BYTES.decode(out))


def test_special_ids_distinct_above_bytes_and_skipped_by_decode():
    ids = [BYTES.special(name) for name in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and min(ids) >= 256
    assert max(ids) == BYTES.vocab_size - 1 == 267
    assert (BYTES.pad_id, BYTES.bos_id, BYTES.success_id) == (BYTES.special("<pad>"), BYTES.special("<bos>"), 267)
    assert BYTES.decode([BYTES.bos_id, *BYTES.encode("hé"), BYTES.eos_id, BYTES.pad_id]) == "hé"
    assert BYTES.decode(torch.tensor([104, 105])) == "hi"
    assert BYTES.decode([0xFF, 104]) == "\ufffdh"  # invalid UTF-8 is replaced, not fatal
    with pytest.raises(WorldmotError, match="<nope>"):
        BYTES.special("<nope>")
    with pytest.raises(WorldmotError, match="outside"):
        BYTES.decode([BYTES.vocab_size])


def test_make_text_tokenizer_default_and_missing_file(tmp_path):
    assert isinstance(make_text_tokenizer(""), ByteTokenizer)
    missing = str(tmp_path / "nope.json")
    with pytest.raises(WorldmotError, match="nope.json"):
        make_text_tokenizer(missing)


@functools.lru_cache(maxsize=1)
def _tiny_bpe_file() -> str:
    tokenizers = pytest.importorskip("tokenizers", reason="optional extra worldmot[tokenizers] not installed")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["[UNK]"]
    )
    corpus = ["pick up the red block", "move above the blue block", "push the cube to the goal", "grüße, 世界"] * 20
    tok.train_from_iterator(corpus, trainer)
    path = os.path.join(tempfile.mkdtemp(prefix="worldmot-bpe-"), "tokenizer.json")
    tok.save(path)
    return path


def test_tokenizers_file_specials_follow_vocab():
    tok = make_text_tokenizer(_tiny_bpe_file())
    base = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    assert tok.bos_id == base + 1 and tok.vocab_size == base + len(SPECIAL_TOKENS)
    ids = tok.encode("pick up the red block")
    assert len(ids) < len("pick up the red block")  # merges learned
    assert tok.decode([tok.bos_id, *ids, tok.eos_id]) == "pick up the red block"


@settings(max_examples=50, deadline=None)
@given(st.text(), st.integers(0, 12))
def test_tokenizers_file_round_trip_and_truncation(text, max_len):
    tok = make_text_tokenizer(_tiny_bpe_file())
    assert tok.decode(tok.encode(text)) == text
    cut = tok.decode(tok.encode(text, max_len=max_len))
    assert len(tok.encode(text, max_len=max_len)) <= max_len
    assert text.startswith(cut)


def test_tokenizers_file_malformed(tmp_path):
    pytest.importorskip("tokenizers", reason="optional extra worldmot[tokenizers] not installed")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WorldmotError, match="bad.json"):
        make_text_tokenizer(str(bad))


# =====================================================================================================
# Actions
# =====================================================================================================


@st.composite
def ranges_and_values(draw):
    d = draw(st.integers(1, 6))
    low = draw(hnp.arrays(np.float64, d, elements=st.floats(-100, 100)))
    width = draw(hnp.arrays(np.float64, d, elements=st.floats(1e-3, 100)))
    n_bins = draw(st.integers(1, 512))
    frac = draw(hnp.arrays(np.float64, (draw(st.integers(1, 5)), d), elements=st.floats(0, 1)))
    return low, low + width, n_bins, low + frac * width


@given(ranges_and_values())
def test_action_round_trip_within_half_bin(case):
    low, high, n_bins, x = case
    tok = ActionTokenizer(low, high, n_bins)
    bins = tok.encode(x)
    assert bins.dtype == np.int64 and bins.shape == x.shape
    assert ((bins >= 0) & (bins < n_bins)).all()
    err = np.abs(tok.decode(bins) - x)
    assert (err <= tok.bin_width / 2 + 1e-6).all()
    assert tok.n_clipped == 0 and tok.n_seen == x.size


@given(ranges_and_values(), st.floats(1e-3, 50))
def test_action_outside_range_clipped_and_reported(case, overshoot):
    low, high, n_bins, _ = case
    tok = ActionTokenizer(low, high, n_bins)
    x = np.stack([low - overshoot, high + overshoot, (low + high) / 2])
    bins, clipped = tok.encode(x, return_clipped=True)
    assert clipped[:2].all() and not clipped[2].any()
    assert (bins[0] == 0).all() and (bins[1] == n_bins - 1).all()
    # outside the range the error is the distance to the range plus at most half a bin
    err = np.abs(tok.decode(bins[:2]) - x[:2])
    assert (err <= overshoot + tok.bin_width / 2 + 1e-6).all()
    assert tok.n_clipped == 2 * len(low)
    assert f"{2 * len(low)} of {3 * len(low)}" in tok.clip_report()


@given(ranges_and_values())
def test_action_bins_monotone(case):
    low, high, n_bins, _ = case
    tok = ActionTokenizer(low, high, n_bins)
    x = np.linspace(low - 1, high + 1, 200)
    assert (np.diff(tok.encode(x), axis=0) >= 0).all()


def test_action_torch_in_torch_out_and_numpy_in_numpy_out():
    tok = ActionTokenizer([-1.0, 0.0], [1.0, 2.0], 16)
    x = np.array([[0.1, 1.5], [-0.3, 0.2]])
    bt = tok.encode(torch.tensor(x, dtype=torch.float32))
    bn = tok.encode(x)
    assert isinstance(bt, torch.Tensor) and bt.dtype == torch.int64
    assert isinstance(bn, np.ndarray) and bn.dtype == np.int64
    assert (bt.numpy() == bn).all()
    assert isinstance(tok.decode(bt), torch.Tensor) and tok.decode(bt).dtype == torch.float32
    assert isinstance(tok.decode(bn), np.ndarray)
    with pytest.raises(WorldmotError, match=r"\(\.\.\., 2\)"):
        tok.encode(np.zeros((3, 5)))
    with pytest.raises(WorldmotError, match="outside"):
        tok.decode(np.array([[0, 16]]))
    with pytest.raises(WorldmotError, match="NaN"):
        tok.encode(np.array([[np.nan, 0.0]]))


def test_action_from_stats_layout_fallback_and_errors(tmp_path):
    stats = {"action": {"q01": [-1.0, 0.0], "q99": [1.0, 2.0], "min": [-5.0, -5.0], "max": [5.0, 5.0]},
             "observation.state": {"min": [0.0], "max": [3.0]}}
    tok = ActionTokenizer.from_stats(stats, n_bins=8)
    assert np.allclose(tok.low, [-1, 0]) and np.allclose(tok.high, [1, 2]) and tok.dim == 2
    state = ActionTokenizer.from_stats(stats, key="observation.state")  # no quantiles -> min/max
    assert np.allclose(state.high, [3.0])
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    assert np.allclose(ActionTokenizer.from_stats(str(path)).low, [-1, 0])
    with pytest.raises(WorldmotError, match="'actions'"):
        ActionTokenizer.from_stats(stats, key="actions")
    with pytest.raises(WorldmotError, match="q01"):
        ActionTokenizer.from_stats({"action": {"mean": [0.0]}})


def test_action_degenerate_dimension_and_serialisation():
    tok = ActionTokenizer([0.0, 2.0], [1.0, 2.0], 32)  # dim 1 is constant
    assert np.isfinite(tok.bin_width).all() and (tok.bin_width > 0).all()
    x = np.array([[0.5, 2.0]])
    assert abs(tok.decode(tok.encode(x))[0, 1] - 2.0) < 1e-6
    assert abs(tok.normalize(x)[0, 1]) < 1e-6
    again = ActionTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert (again.encode(x) == tok.encode(x)).all() and again.n_bins == 32


@given(ranges_and_values())
def test_action_normalize_inverse(case):
    low, high, _, x = case
    tok = ActionTokenizer(low, high)
    y = tok.normalize(x)
    assert (y >= -1 - 1e-9).all() and (y <= 1 + 1e-9).all()
    assert np.allclose(tok.unnormalize(y), x, atol=1e-9)
    yt = tok.normalize(torch.tensor(x))
    assert isinstance(yt, torch.Tensor) and np.allclose(yt.numpy(), y)
    assert (tok.unnormalize(np.array([[5.0] * len(low)]), clip=True) <= high + 1e-9).all()


@given(st.integers(1, 23), st.integers(1, 4), st.integers(1, 6))
def test_chunk_actions_shapes_mask_and_inverse(t, d, c):
    a = np.arange(t * d, dtype=np.float32).reshape(t, d)
    chunks, mask = chunk_actions(a, c)
    n = -(-t // c)
    assert chunks.shape == (n, c, d) and mask.shape == (n, c) and mask.sum() == t
    assert (chunks[~mask] == a[-1]).all()  # padding holds the last action
    assert (unchunk_actions(chunks, mask) == a).all()
    ct, mt = chunk_actions(torch.from_numpy(a), c)
    assert isinstance(ct, torch.Tensor) and (ct.numpy() == chunks).all() and (mt.numpy() == mask).all()


def test_chunk_tokens_step_major_then_dimension():
    tok = ActionTokenizer([0.0, 10.0], [1.0, 11.0], 10)
    chunk = np.array([[0.05, 10.15], [0.25, 10.35], [0.45, 10.55]])  # (C=3, D=2)
    tokens = tok.encode_chunk(chunk)
    assert tokens.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.allclose(tok.decode_chunk(tokens), chunk)


# =====================================================================================================
# Frames
# =====================================================================================================


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(1, 3), st.sampled_from([1, 3]), st.integers(0, 2**31 - 1))
def test_patch_round_trip_exact(p, n, batch, channels, seed):
    s = p * n
    tok = PatchTokenizer(s, p, channels)
    x = torch.randn(batch, 2, channels, s, s, generator=torch.Generator().manual_seed(seed))
    t = tok.encode(x)
    assert t.shape == (batch, 2, tok.tokens_per_frame, tok.token_dim) == (batch, 2, n * n, p * p * channels)
    assert tok.grid == (n, n)
    assert torch.equal(tok.decode(t), x)


def test_patch_layout_row_major():
    tok = PatchTokenizer(4, 2, channels=1)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    t = tok.encode(x)
    assert t[0, 0].tolist() == [0, 1, 4, 5] and t[0, 1].tolist() == [2, 3, 6, 7] and t[0, 2].tolist() == [8, 9, 12, 13]
    with pytest.raises(WorldmotError, match="divisible"):
        PatchTokenizer(10, 4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(2, 90), st.integers(2, 90), st.sampled_from([8, 16, 32]))
def test_preprocess_any_shape(n, h, w, s):
    frames = np.random.default_rng(h * w).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    x = preprocess_frames(frames, s)
    assert x.shape == (n, 3, s, s) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_preprocess_single_frame_grey_torch_and_crop_centre():
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 20:60] = 255  # the centred square is white, the sides black
    x = preprocess_frames(frame, 16)
    assert x.shape == (1, 3, 16, 16) and torch.allclose(x, torch.ones_like(x))
    grey = preprocess_frames(torch.full((2, 20, 30, 1), 128, dtype=torch.uint8), 8)
    assert grey.shape == (2, 3, 8, 8)
    with pytest.raises(WorldmotError, match="uint8"):
        preprocess_frames(np.zeros((8, 8, 3), np.float32), 8)
    with pytest.raises(WorldmotError, match="shape"):
        preprocess_frames(np.zeros((8, 8), np.uint8), 8)


@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(12), st.just(12), st.just(3))))
def test_to_uint8_inverts_preprocess_at_model_size(frames):
    back = to_uint8(preprocess_frames(frames, 12))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 1


def test_draw_overlay_copies_upscales_and_writes():
    frame = np.full((64, 64, 3), 90, np.uint8)
    out = draw_overlay(frame, ["pick up the red block", "action [0.10, -0.20, 0.00]", "success: yes", "é"])
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert (frame == 90).all()  # input untouched
    assert (out == 255).any() and (out == 0).any()  # white text with a black outline
    big = np.zeros((300, 400, 3), np.uint8)
    assert draw_overlay(big, ["x" * 500]).shape == big.shape  # long line cut, no upscale


def test_make_frame_tokenizer_choices_and_errors(tmp_path):
    assert isinstance(make_frame_tokenizer("patch", 64, 8), PatchTokenizer)
    with pytest.raises(WorldmotError, match="patch, latent"):
        make_frame_tokenizer("pixels", 64, 8)
    with pytest.raises(WorldmotError, match="latent_path"):
        make_frame_tokenizer("latent", 64, 8)
    with pytest.raises(WorldmotError, match="nope"):
        make_frame_tokenizer("latent", 64, 8, str(tmp_path / "nope"))
    with pytest.raises(WorldmotError, match="nope"):
        LatentTokenizer.from_pretrained(str(tmp_path / "nope"))


# ---------------------------------------------------------------- latent tokenizer

def _toy_frames(n: int, s: int, seed: int = 0) -> torch.Tensor:
    """A horizontal gradient with one coloured square per frame (like a block on a table)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, s, s, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, s).astype(np.uint8)[None, None, :]
    k = s // 4
    for f in frames:
        y, x = rng.integers(0, s - k, 2)
        f[y : y + k, x : x + k] = rng.integers(0, 256, 3)
    return preprocess_frames(frames, s)


SMALL_VAE = dict(block_out_channels=(16, 32, 32), batch_size=8, lr=3e-3, progress=False)


def test_latent_short_training_lowers_reconstruction_error():
    frames = _toy_frames(32, 16)
    untrained = train_latent_tokenizer(frames, steps=0, **SMALL_VAE)
    trained = train_latent_tokenizer(frames, steps=30, **SMALL_VAE)
    before, after = untrained.reconstruction_error(frames), trained.reconstruction_error(frames)
    assert after < 0.25 * before, (before, after)
    tokens = trained.encode(frames)
    assert tokens.shape == (32, 16, 4)  # 16 px / 4x down = 4x4 latent, 4 channels
    assert abs(float(tokens.mean())) < 1e-3 and abs(float(tokens.std()) - 1) < 1e-3  # calibrated


def test_latent_save_load_identical_and_factory(tmp_path):
    frames = _toy_frames(8, 16)
    tok = train_latent_tokenizer(frames, steps=2, latent_patch_size=2, **SMALL_VAE)
    folder = tmp_path / "vae"
    tok.save(str(folder))
    tok.save(str(folder))  # overwriting works and leaves no temporary folders behind
    assert sorted(os.listdir(tmp_path)) == ["vae"]
    loaded = LatentTokenizer.from_pretrained(str(folder))
    assert (loaded.image_size, loaded.latent_patch_size, loaded.scale, loaded.shift) == (16, 2, tok.scale, tok.shift)
    assert torch.equal(loaded.encode(frames), tok.encode(frames))
    assert loaded.encode(frames).shape == (8, 4, 16) and loaded.grid == (2, 2) and loaded.token_dim == 16
    # tokens_per_frame follows patch_size in pixels for both kinds
    via_factory = make_frame_tokenizer("latent", 16, 8, str(folder))
    assert via_factory.tokens_per_frame == PatchTokenizer(16, 8).tokens_per_frame == 4
    decoded = via_factory.decode(via_factory.encode(frames.reshape(2, 4, 3, 16, 16)))
    assert decoded.shape == (2, 4, 3, 16, 16) and decoded.abs().max() <= 1
    with pytest.raises(WorldmotError, match="multiple"):
        make_frame_tokenizer("latent", 16, 6, str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorldmotError, match="config.json"):
        LatentTokenizer.from_pretrained(str(tmp_path / "empty"))
    assert LatentTokenizer.from_pretrained(str(tmp_path)).image_size == 16  # a pipeline folder with vae/


@pytest.mark.slow
def test_latent_default_architecture_learns_32px():
    frames = _toy_frames(64, 32)
    untrained = train_latent_tokenizer(frames, steps=0, batch_size=8, lr=2e-3, progress=False)
    trained = train_latent_tokenizer(frames, steps=200, batch_size=8, lr=2e-3, progress=False)
    before, after = untrained.reconstruction_error(frames), trained.reconstruction_error(frames)
    assert after < 0.05 * before, (before, after)


def test_tokenizers_file_without_the_package_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    from worldmot.tokenizers import TokenizersText

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails as if not installed
    with pytest.raises(WorldmotError, match=r"worldmot\[tokenizers\]"):
        TokenizersText(str(tmp_path / "t.json"))
