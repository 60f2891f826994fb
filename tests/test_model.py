"""The MoT world model: no leaks, exact routing, KV cache == full forward, dense vs MoT cost, save/load."""
from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import worldmot
from model_fixtures import full_inputs, loss_and_grads, losses, make_batch, make_model, small_config
from worldmot.checkpoint import save_model
from worldmot.config import ModelConfig
from worldmot.errors import WorldmotError
from worldmot.model import imagination, mot
from worldmot.model.world_model import SegmentInputs
from worldmot.training.losses import WorldModelLoss, own_context_frames, sample_noise, target_positions
from worldmot.sequence import MODALITIES, ROLE_FRAME, ROLE_NOISY, ROLE_STATE, attention_mask

FULL = {"text": "text", "action": "action", "state": "action", "frame": "frame"}
TWO_PATH = {"text": "ar", "action": "ar", "state": "ar", "frame": "dit"}
DENSE = {"text": "shared", "action": "shared", "state": "shared", "frame": "shared"}


def _tool_module(path: str):
    """A module of tools/ (not a package: the tools run as scripts), imported from its file."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / "tools" / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_full(model, batch, inp):
    lay = batch.layout
    h, _ = model.run(lay.segment(0, lay.length), inp)
    return h


# ----------------------------------------------------------------------------------------------------
# No leak
# ----------------------------------------------------------------------------------------------------

def test_perturbing_a_noisy_frame_changes_only_that_frame():
    model = make_model()
    batch = make_batch(model)
    inp = full_inputs(batch)
    h = run_full(model, batch, inp)
    noisy = inp.noisy.clone()
    noisy[:, 0] += torch.randn_like(noisy[:, 0])  # the noisy copy of f_1
    h2 = run_full(model, batch, SegmentInputs(**{**inp.__dict__, "noisy": noisy}))
    rows = batch.layout.noisy_frames[0]
    others = np.setdiff1d(np.arange(batch.layout.length), rows)
    torch.testing.assert_close(h2[:, others], h[:, others], rtol=0, atol=1e-6)
    assert (h2[:, rows] - h[:, rows]).abs().max() > 1e-3, "the test perturbation had no effect"


@pytest.mark.parametrize("where", ["token", "state", "frame"])
def test_nothing_after_position_p_reaches_positions_up_to_p(where):
    model = make_model()
    batch = make_batch(model)
    lay = batch.layout
    inp = full_inputs(batch)
    h = run_full(model, batch, inp)
    changed = dict(inp.__dict__)
    if where == "token":
        p = int(lay.actions[1][0])  # first action token of step 1
        ids = inp.token_ids.clone()
        ids[:, p] = (ids[:, p] + 1 - model.vocab.action_offset) % model.cfg.sequence.action_bins + model.vocab.action_offset
        changed["token_ids"] = ids
    elif where == "state":
        p = int(lay.states[1])
        changed["states"] = inp.states.clone()
        changed["states"][:, 1] += 1.0
    else:
        p = int(lay.frames[2][0])  # the clean f_2 block
        changed["frames"] = inp.frames.clone()
        changed["frames"][:, 2] += 0.5
    h2 = run_full(model, batch, SegmentInputs(**changed))
    before = np.arange(p)
    before = before[~lay.noisy[before]]  # (the noisy copy of f_2 sits before f_2 and is not "before p" in time)
    torch.testing.assert_close(h2[:, before], h[:, before], rtol=0, atol=1e-6)
    assert (h2[:, p:] - h[:, p:]).abs().max() > 1e-3


def test_state_is_read_off_the_frame_before_the_state_token_is_seen():
    """The read-out at [EOF] of f_k must not see s_k (imagined frames have none): it changes with the frame,
    never with the state token after it, and the training loss compares it with that state."""
    model = make_model()
    batch = make_batch(model)
    lay = batch.layout
    inp = full_inputs(batch)
    at_eof = torch.as_tensor(lay.states - 1)
    assert (lay.token_template[lay.states - 1] == model.vocab.special["<eof>"]).all()
    read = model.read_state(run_full(model, batch, inp)[:, at_eof])
    for k in range(lay.n_steps):
        states = inp.states.clone()
        states[:, k] += 5.0
        same = model.read_state(run_full(model, batch, SegmentInputs(**{**inp.__dict__, "states": states}))[:, at_eof])
        torch.testing.assert_close(same[:, : k + 1], read[:, : k + 1], rtol=0, atol=1e-6)
    frames = inp.frames.clone()
    frames[:, 1] += 0.5
    moved = model.read_state(run_full(model, batch, SegmentInputs(**{**inp.__dict__, "frames": frames}))[:, at_eof])
    assert (moved[:, 1] - read[:, 1]).abs().max() > 1e-3
    torch.testing.assert_close(moved[:, 0], read[:, 0], rtol=0, atol=1e-6)
    want = ((read - batch.states) ** 2).mean()  # every frame of make_batch is valid
    out = losses(model, batch, t=inp.t, noise=torch.randn_like(inp.noisy))
    torch.testing.assert_close(out["st"], want, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------------------------------------

def reference_forward(model, seg, inp):
    """Token by token, in the original order: each token through its own expert; explicit softmax attention."""
    trunk = model.trunk
    x = model.embed(seg, inp)[0]  # one sample: (n, D)
    n, D = x.shape
    modality = seg.arr("modality")
    names = [trunk.experts[MODALITIES[m]] for m in modality]
    noisy = seg.arr("noisy")
    steps = seg.arr("step")
    noisy_steps = sorted(set(steps[noisy]))
    def condition(i):  # time of the token's noisy frame + the action chunk written just before that frame
        k = steps[i]
        acts = model.action_values(inp.token_ids[0, seg.layout.actions[k - 1] - seg.start])
        return F.silu(model.time_embed(inp.t[0, noisy_steps.index(k)][None])[0] + model.action_cond(acts))

    cond = [condition(i) if noisy[i] else None for i in range(n)]

    def ada(lin, k, i):  # clean tokens: shift 0, scale 0, gates 1 (written out, not the library's helper)
        if cond[i] is not None:
            return lin(cond[i])
        return torch.cat([torch.ones(D) if (k == 6 and c in (2, 5)) else torch.zeros(D) for c in range(k)])

    block = torch.as_tensor(seg.arr("block"))
    mask = attention_mask(block, torch.as_tensor(noisy), block, torch.as_tensor(noisy))
    H = trunk.heads
    modulated = lambda h, shift, scale: h * (1 + scale) + shift
    for layer in trunk.layers:
        mods, q, k, v = [], [], [], []
        for i in range(n):
            blk = layer[names[i]]
            mod = ada(blk.ada, 6, i).chunk(6)
            qi, ki, vi = blk.qkv(modulated(blk.norm1(x[i]), mod[0], mod[1])).view(3, H, D // H)
            mods.append(mod), q.append(blk.q_norm(qi)), k.append(blk.k_norm(ki)), v.append(vi)
        q, k, v = torch.stack(q, 1), torch.stack(k, 1), torch.stack(v, 1)  # (H, n, dh)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        attn = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v  # (H, n, dh)
        attn = attn.transpose(0, 1).reshape(n, D)
        rows = []
        for i in range(n):
            blk, (_, _, gate1, shift2, scale2, gate2) = layer[names[i]], mods[i]
            xi = x[i] + gate1 * blk.out(attn[i])
            rows.append(xi + gate2 * blk.mlp(modulated(blk.norm2(xi), shift2, scale2)))
        x = torch.stack(rows)
    final = lambda i: modulated(trunk.final[names[i]].norm(x[i]), *ada(trunk.final[names[i]].ada, 2, i).chunk(2))
    return torch.stack([final(i) for i in range(n)])


def lean_blocks(cfg):
    """The GPU configs' blocks: no linear biases, QK-norm's weight on the queries only."""
    cfg.block_bias, cfg.key_norm_weight = False, False
    return cfg


# every expert map, the GPU configs' lean blocks and two cameras: the variants the trunk must treat alike
MODEL_VARIANTS = pytest.mark.parametrize(
    "experts, lean, cameras", [(FULL, False, 1), (TWO_PATH, False, 1), (DENSE, False, 1), (FULL, True, 1), (FULL, False, 2)],
    ids=["full", "two_path", "dense", "full_lean_blocks", "full_two_cameras"])


@MODEL_VARIANTS
def test_mot_forward_equals_token_by_token_reference(experts, lean, cameras):
    cfg = small_config(experts, cameras=cameras)
    model = make_model(lean_blocks(cfg) if lean else cfg)
    if lean:
        assert not any(n.endswith(("qkv.bias", "out.bias", "mlp.0.bias", "mlp.2.bias", "k_norm.weight"))
                       for n, _ in model.trunk.named_parameters())
    batch = make_batch(model, B=1)
    inp = full_inputs(batch)
    with torch.no_grad():
        fast = run_full(model, batch, inp)[0]
        slow = reference_forward(model, batch.layout.segment(0, batch.layout.length), inp)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def eager_reference(cfg):
    """A model with every parameter drawn anew (non-zero adaLN, so that the noisy tokens' modulation counts), a
    batch, its inputs, and the eager loss and gradients to compare another attention or compile path with."""
    model = make_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    batch = make_batch(model, B=2)
    inp = full_inputs(batch)
    return (model, batch, inp, *loss_and_grads(model, batch, inp))


@pytest.mark.parametrize("scope", ["layer", "blocks"])
def test_compiled_trunk_computes_the_same_loss_and_gradients(scope):
    """``compile=true`` swaps in a torch.compile'd layer (or block functions): one graph each (fullgraph:
    a graph break would fall back to eager for the rest), and the same numbers. The eager backend traces
    with dynamo without needing a C++ compiler."""
    model, batch, inp, want, want_grads = eager_reference(small_config(FULL))
    torch._dynamo.reset()
    model.trunk.compile(scope, backend="eager", fullgraph=True)
    got, got_grads = loss_and_grads(model, batch, inp)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fp32_residual", [False, True])
def test_residual_stream_under_autocast_is_in_the_autocast_dtype_unless_asked_for_fp32(fp32_residual):
    """bf16 between the layers halves the bytes of the elementwise kernels on the stream (the GPU step's
    largest memory traffic); fp32 runs never see it."""
    cfg = small_config(FULL)
    cfg.fp32_residual = fp32_residual
    model = make_model(cfg)
    batch = make_batch(model, B=2)
    seen = []
    run_layer = model.trunk._run_layer
    def spy(layer, route, xs, *rest):
        seen.extend(x.dtype for x in xs)
        return run_layer(layer, route, xs, *rest)
    model.trunk._run_layer = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = losses(model, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert set(seen) == {torch.float32 if fp32_residual else torch.bfloat16}
    seen.clear()
    losses(model, batch)
    assert set(seen) == {torch.float32}


def test_norms_keep_the_bf16_stream_under_cudas_autocast_policy(monkeypatch):
    """CUDA autocast runs layer_norm and rms_norm in fp32: unless the trunk keeps its norms in the stream's
    dtype, every normalised activation and q and k are written in fp32 (a sixth more memory traffic per layer).
    The CPU emulates CUDA's policy for this with the benchmark tools' tools/benchmarks/autocast_policy.py."""
    cuda_norm_policy = _tool_module("benchmarks/autocast_policy.py").cuda_norm_policy

    for op in ("aten::layer_norm", "aten::rms_norm"):  # the emulated policy is this torch's: a CUDA cast, no CPU one
        kernels = torch._C._dispatch_dump(op)
        assert "AutocastCUDA: registered" in kernels and "AutocastCPU: registered" not in kernels, op
    model = make_model(small_config(FULL))
    batch = make_batch(model, B=2)
    normalised, attended = [], []
    shift_scale, qkv_of = mot.shift_scale, model.trunk._qkv_of
    def spy_shift_scale(h, *rest):
        normalised.append(h.dtype)
        return shift_scale(h, *rest)
    def spy_qkv(*args):
        q, k, v = qkv_of(*args)
        attended.extend((q.dtype, k.dtype, v.dtype))
        return q, k, v
    monkeypatch.setattr(mot, "shift_scale", spy_shift_scale)
    model.trunk._qkv_of = spy_qkv
    with cuda_norm_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.layer_norm(torch.ones(2, 4, dtype=torch.bfloat16), (4,)).dtype == torch.float32  # the policy holds
        losses(model, batch)["loss"].backward()
    assert set(normalised) == set(attended) == {torch.bfloat16}


def test_routing_order_keeps_the_training_mask_tile_sparse():
    """The frame expert's slice comes first, so that base's 64-token frames fill whole 64 x 64 tiles of the
    permuted mask: flex attention computes 58% of a training window's tiles in this order (44% of the
    entries are allowed), 78% in the alphabetical order of the experts (frames in the middle)."""
    from worldmot.config import config_dir, load_config
    from worldmot.model.mot import build_routing, computed_tiles

    cfg = load_config(ModelConfig, [config_dir() / "model" / "base.yaml"], ["width=64", "depth=1", "heads=1"])
    model = make_model(cfg, randomize=False)
    layout = make_batch(model, B=1).layout
    seg = layout.segment(0, layout.length)
    route = model.trunk.routing(seg, torch.device("cpu"))
    assert model.trunk.routing_order[0] == model.trunk.experts["frame"]
    assert computed_tiles(route.flex_mask(64)) <= 0.6
    alphabetical = build_routing(seg, model.trunk.experts, model.trunk.expert_names, torch.device("cpu"))
    assert computed_tiles(alphabetical.flex_mask(64)) >= 0.75
    assert torch.equal(route.mask, attention_mask(route.mask_blocks, route.noisy, route.mask_blocks, route.noisy))


def test_query_tiles_cover_exactly_the_mask_and_halve_a_base_window():
    """Put back together, the tiles' key runs and masks are the routing's mask, pair for pair (a pair left out
    would hide a key, one let in would leak a noisy frame or the future); base's training window computes about
    half of the n x n product in 64-row tiles, its clean frames without a mask."""
    from worldmot.config import config_dir, load_config
    from worldmot.model.query_tiles import computed_fraction

    cfg = load_config(ModelConfig, [config_dir() / "model" / "base.yaml"], ["width=64", "depth=1", "heads=1"])
    model = make_model(cfg, randomize=False)
    layout = make_batch(model, B=1).layout
    route = model.trunk.routing(layout.segment(0, layout.length), torch.device("cpu"))
    n = layout.length
    for size in (32, 64, 500):
        tiled = route.query_tiles(size)
        rebuilt = torch.zeros(n, n, dtype=torch.bool)
        for c in tiled.tiles:
            keys = tiled.key_order[c.keys]
            rebuilt[c.start:c.end, keys] = True if c.mask is None else c.mask
        assert torch.equal(rebuilt, route.mask), size
        tiles = tiled.tiles
        assert [c.start for c in tiles[1:]] == [c.end for c in tiles[:-1]] and tiles[-1].end == n
    tiled = route.query_tiles(64)
    assert computed_fraction(tiled) <= 0.55
    frames = next(sl for sl in route.slices if sl.name == model.trunk.experts["frame"])
    assert all(c.mask is None for c in tiled.tiles if frames.start <= c.start < frames.first_noisy)


def test_query_tiles_give_the_masked_sdpa_loss_and_gradients():
    """model.attention_query_tile: the same function as one SDPA call with the boolean mask (fp32 sums in
    another order: close, not bit-equal)."""
    cfg = small_config(FULL, n_steps=4)
    model, batch, inp, want, want_grads = eager_reference(cfg)
    model.trunk.query_tile = 16
    calls = []
    tiled = mot.tiled_attention
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mot, "tiled_attention", lambda *a: calls.append(1) or tiled(*a))
        got, got_grads = loss_and_grads(model, batch, inp)
    assert len(calls) == cfg.depth
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for (name, _), g, w in zip(model.named_parameters(), got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="inductor on the CPU needs a C++ compiler")
@pytest.mark.parametrize("tile", [64, 128])
def test_flex_attention_on_the_mask_tiles_computes_the_sdpa_forward(tile):
    """attention=flex: the routing's flex mask (skipped, full and partial tiles) gives SDPA's numbers.
    Inductor's CPU kernel honours the tiles as the GPU's does; forward only, torch has no flex backward on
    the CPU (tests/test_gpu_training.py checks the gradients on a GPU)."""
    model = make_model(small_config(FULL, n_steps=4))
    with torch.no_grad():
        for p in model.parameters():  # non-zero adaLN so that the noisy tokens' modulation counts
            p.normal_(0, 0.05)
    batch = make_batch(model, B=2)
    inp = full_inputs(batch)
    with torch.no_grad():
        want = run_full(model, batch, inp)
        torch._dynamo.reset()
        model.trunk.compile("layer", attention="flex", flex_tile=tile, fullgraph=True)
        got = run_full(model, batch, inp)
    assert model.trunk.routing(batch.layout.segment(0, batch.layout.length), torch.device("cpu"))._flex_masks
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_ce_is_the_mean_over_kinds_of_each_kinds_weighted_token_mean():
    """The loss weights every candidate target instead of selecting the targets (no data-dependent shapes): the
    same number as selecting them, also when a kind has no target in the batch (it drops out of the mean)."""
    model = make_model(small_config(keypoints=2))
    batch = make_batch(model, B=3)
    layout = batch.layout
    batch.target_mask[:, layout.progress] = False  # no progress targets at all
    batch.target_mask[0, layout.actions.reshape(-1)[::3]] = False
    inp = full_inputs(batch)
    with torch.no_grad():
        h, _ = model.run(layout.segment(0, layout.length), inp)
        got = losses(model, batch, t=inp.t, noise=inp.noisy)["ce"]
    targets, kinds, sources = target_positions(layout, model.cfg.sequence.action_dim)
    mask = batch.target_mask[:, targets]
    ids = batch.target_ids[:, targets]
    per_token = F.cross_entropy(model.next_token_logits(h[:, targets - 1][mask]), ids[mask], reduction="none")
    src = torch.as_tensor(sources)
    repeats = (src >= 0) & (ids == batch.target_ids[:, src.clamp(min=0)])
    weight = torch.where(repeats, model.cfg.ce_repeat_weight, 1.0)[mask]
    kind = torch.as_tensor(kinds).expand(len(mask), -1)[mask]
    want = torch.stack([(per_token * weight)[kind == k].sum() / weight[kind == k].sum() for k in (0, 1)]).mean()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_training_forward_is_one_graph():
    """No host synchronisation in the loss (boolean indexing, .item(), host-to-device index copies): on a GPU
    each one stalled the step, and each is a graph break for torch.compile."""
    model = make_model(small_config(keypoints=2))
    batch = make_batch(model, B=2)
    objective = WorldModelLoss(model)
    objective(batch)  # builds the layout's constants
    explained = torch._dynamo.explain(objective)(batch)
    assert explained.graph_break_count == 0, [str(r.reason)[:200] for r in explained.break_reasons]


@MODEL_VARIANTS
def test_every_parameter_gets_a_gradient(experts, lean, cameras):
    """DDP refuses parameters that get no gradient, and weight decay would shrink them for nothing."""
    cfg = small_config(experts, cameras=cameras)
    model = make_model(lean_blocks(cfg) if lean else cfg)
    assert (model.camera_embed is None) == (cameras == 1)  # one camera: the one-camera model's parameters
    batch = make_batch(model)
    batch.state_dropped[0, 0] = True  # training drops states now and then (the learned "no state" embedding)
    losses(model, batch)["loss"].backward()
    idle = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not idle, f"parameters without a gradient: {idle}"


def test_reference_catches_tokens_put_back_in_the_wrong_order():
    """The reference is strict: swapping two positions' outputs is detected."""
    model = make_model()
    batch = make_batch(model, B=1)
    inp = full_inputs(batch)
    with torch.no_grad():
        fast = run_full(model, batch, inp)[0]
        slow = reference_forward(model, batch.layout.segment(0, batch.layout.length), inp)
    i, j = int(batch.layout.states[0]), int(batch.layout.actions[0][0])
    swapped = fast.clone()
    swapped[[i, j]] = fast[[j, i]]
    assert not torch.allclose(swapped, slow, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cameras", [1, 2])
def test_kv_cache_decoding_and_cached_frame_generation_equal_full_forward(cameras):
    model = make_model(small_config(cameras=cameras))
    batch = make_batch(model)
    lay = batch.layout
    inp = full_inputs(batch)
    with torch.no_grad():
        full = run_full(model, batch, inp)

        def sub(start, end):
            seg = lay.segment(start, end)
            role = seg.arr("role")
            steps = sorted(set(seg.arr("step")[role == ROLE_FRAME]))
            st_steps = seg.arr("step")[role == ROLE_STATE]
            nz = sorted(set(seg.arr("step")[role == ROLE_NOISY]))
            j = [s - 1 for s in nz]
            return seg, SegmentInputs(
                inp.token_ids[:, start:end],
                inp.frames[:, steps] if steps else None,
                inp.states[:, st_steps] if len(st_steps) else None,
                inp.state_dropped[:, st_steps] if len(st_steps) else None,
                inp.noisy[:, j] if j else None, inp.noisy_last[:, j] if j else None, inp.t[:, j] if j else None,
                model.action_values(inp.token_ids[:, lay.actions[j]]) if j else None)

        ctx_end = int(lay.progress[0])
        seg, si = sub(0, ctx_end)
        h, cache = model.run(seg, si, append=True)
        torch.testing.assert_close(h, full[:, :ctx_end], rtol=1e-5, atol=1e-5)
        for p in range(ctx_end, int(lay.eoa[0]) + 1):  # p_0, reasoning, actions: one token at a time
            seg, si = sub(p, p + 1)
            h, cache = model.run(seg, si, cache=cache, append=True)
            torch.testing.assert_close(h[:, 0], full[:, p], rtol=1e-5, atol=1e-5)
        rows = lay.noisy_frames[0]
        seg, si = sub(int(rows[0]), int(rows[-1]) + 1)
        h, same = model.run(seg, si, cache=cache, append=False)
        assert same is cache and cache.length == int(lay.eoa[0]) + 1, "denoising must not extend the cache"
        torch.testing.assert_close(h, full[:, rows], rtol=1e-5, atol=1e-5)
        seg, si = sub(int(lay.bof[1]), int(lay.eoa[1]) + 1)  # the clean f_1 and the rest of step 1 at once
        h, cache = model.run(seg, si, cache=cache, append=True)
        torch.testing.assert_close(h, full[:, int(lay.bof[1]) : int(lay.eoa[1]) + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cameras", [1, 2])
def test_one_step_imagination_equals_the_full_forward_x0_estimate(cameras):
    """imagination (cache, scheduler, 1 flow step) reproduces the training-time x0 estimate at t=1, every camera
    of the frame at once."""
    from model_fixtures import make_windows
    from worldmot.sequence import pack_windows

    model = make_model(small_config(cameras=cameras))
    batch = make_batch(model, B=2)
    lay = model.layout(2)
    actions = model.action_tokenizer.decode(model.action_tokenizer.encode(torch.rand(2, 1, 2, 2) * 2 - 1))
    noise = torch.randn(2, 1, *batch.frames.shape[2:], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        im = imagination.start(model, ["reach the red target"] * 2, batch.frames[:, 0], horizon=1)
        p0 = imagination._choose(model.next_token_logits(im.last_hidden), model.token_ids("progress"), 0.0, None)
        imagination.write_step(im, actions[:, 0])
        frame = imagination.imagine_frame(im, flow_steps=1, noise=noise)

        windows, _, _ = make_windows(model.cfg, 2)
        for w, a in zip(windows, actions.numpy()):
            w.update(instruction="reach the red target", actions=np.concatenate([a, a]), subtasks=["", ""],
                     progress=w["progress"][:2], success=w["success"][:2])
        frames = torch.stack([batch.frames[:, 0], frame], 1)
        packed = pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                              action_tokenizer=model.action_tokenizer, frame_tokens=frames, drop_state=np.ones((2, 2), bool))
        packed.token_ids[:, lay.progress[0]] = p0
        h = run_full(model, packed, SegmentInputs(packed.token_ids, frames, packed.states, packed.state_dropped,
                                                  noise, batch.frames[:, :1], torch.ones(2, 1)))
        x0 = model.predict_x0(h[:, lay.noisy_frames[0]], batch.frames[:, :1])[:, 0]
    torch.testing.assert_close(frame, x0, rtol=1e-4, atol=1e-5)
    read = model.read_state(h[:, lay.states - 1])  # what the planner compares with the goal's
    torch.testing.assert_close(im.state, read[:, 1], rtol=1e-4, atol=1e-5)


def test_own_context_feeds_back_the_one_step_prediction_from_the_true_past_only():
    """Training on its own context: f_1 of the chosen rows becomes the t=1 x0 estimate (what imagination
    feeds back, previous test) made from f_0 alone, its state is dropped, other rows and f_0 stay true."""
    model = make_model()
    batch = make_batch(model, B=3)
    assert batch.frames.shape[1] == 3
    rows = torch.tensor([True, False, True])
    frames, dropped = own_context_frames(model, batch, rows)
    lay = batch.layout
    last = batch.frames[:, :-1]
    with torch.no_grad():
        h, _ = model.run(lay.segment(0, lay.length), SegmentInputs(batch.token_ids, batch.frames, batch.states,
                         batch.state_dropped, torch.zeros_like(last), last, torch.ones(3, 2)))
        x0 = model.predict_x0(h[:, torch.as_tensor(lay.noisy_frames.reshape(-1))], last)
    torch.testing.assert_close(frames[rows, 1], x0[rows, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(frames[~rows], batch.frames[~rows])
    torch.testing.assert_close(frames[:, [0, 2]], batch.frames[:, [0, 2]])
    assert bool(dropped[rows, 1:].all()) and bool((dropped[~rows] == batch.state_dropped[~rows]).all())

    later = batch.frames.clone()
    later[:, 1:] = torch.randn_like(later[:, 1:])  # what the prediction must not have seen
    leaked = type(batch)(**{**batch.__dict__, "frames": later})
    torch.testing.assert_close(own_context_frames(model, leaked, rows)[0][rows, 1], frames[rows, 1], rtol=1e-5, atol=1e-6)

    t, noise = sample_noise(model, 3, 3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        none = losses(model, batch, t=t, noise=noise, own_context=torch.zeros(3, dtype=torch.bool))
        plain = losses(model, batch, t=t, noise=noise)
        own = losses(model, batch, t=t, noise=noise, own_context=rows)
    torch.testing.assert_close(none["loss"], plain["loss"])
    assert float(own["fm"]) != float(plain["fm"])


def test_imagination_is_batched_over_candidates():
    model = make_model()
    batch = make_batch(model, B=1)
    actions = torch.rand(5, 2, 2, 2) * 2 - 1
    with torch.no_grad():
        im = imagination.start(model, ["reach the red target"], batch.frames[:, 0], horizon=2).expand(5)
        for h in range(2):
            imagination.write_step(im, actions[:, h])
            imagination.imagine_frame(im, flow_steps=2, generator=torch.Generator().manual_seed(0))
        frames, progress = imagination.rollout(model, ["reach the red target"] * 5, batch.frames[:, 0].expand(5, -1, -1),
                                               actions, flow_steps=2, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (5, 2, *batch.frames.shape[2:]) and progress.shape == (5, 3)
    assert ((progress >= 0) & (progress <= 1)).all()
    assert not torch.allclose(frames[0], frames[1]), "different actions must give different futures"


def test_autoregressive_decoding_writes_reasoning_and_actions_with_guidance():
    model = make_model()
    batch = make_batch(model, B=2)
    with torch.no_grad():
        im = imagination.start(model, ["reach the red target"] * 2, batch.frames[:, 0], horizon=1, cfg_scale=2.0)
        actions, texts = imagination.write_step(im, reason=True)
        frame = imagination.imagine_frame(im, flow_steps=3, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (2, 2, 2) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert ((actions >= -1) & (actions <= 1)).all()
    assert frame.shape == batch.frames[:, 0].shape and torch.isfinite(frame).all()


# ----------------------------------------------------------------------------------------------------
# Dense vs MoT
# ----------------------------------------------------------------------------------------------------

def test_dense_and_mot_have_equal_active_parameters_and_flops_per_token():
    models = {name: make_model(small_config(e)) for name, e in [("full", FULL), ("two", TWO_PATH), ("dense", DENSE)]}
    def owned(m, e):  # an expert's parameters apart from its time conditioning (adaLN runs per frame, not per token)
        return sum(p.numel() for n, p in m.trunk.named_parameters()
                   if (f".{e}." in n or n.startswith(f"final.{e}.")) and ".ada." not in n)

    per_expert = {name: {e: owned(m, e) for e in m.trunk.expert_names} for name, m in models.items()}
    sizes = {v for d in per_expert.values() for v in d.values()}
    assert len(sizes) == 1, f"every expert must have the same size (active parameters per token): {per_expert}"
    timed = {name: {n.split(".")[-3] for n, _ in m.trunk.named_parameters() if ".ada." in n} for name, m in models.items()}
    assert timed == {"full": {"frame"}, "two": {"dit"}, "dense": {"shared"}}, "adaLN only where frames are routed"
    assert len(per_expert["full"]) == 3 and len(per_expert["dense"]) == 1
    flops = {}
    for name, m in models.items():
        batch = make_batch(m)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            losses(m, batch)
        flops[name] = counter.get_total_flops()
    # per-token work is identical; each extra expert only adds its adaLN on the few distinct time vectors
    for name in ("full", "two"):
        assert abs(flops[name] - flops["dense"]) / flops["dense"] < 0.01, flops


# ----------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    model = make_model()
    batch = make_batch(model)
    inp = full_inputs(batch)
    save_model(model, tmp_path / "m")
    loaded = worldmot.load(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(run_full(loaded, batch, inp), run_full(model, batch, inp), rtol=0, atol=0)
    assert loaded.action_tokenizer.to_dict() == model.action_tokenizer.to_dict()


def test_load_reports_missing_and_corrupt_files(tmp_path):
    model = make_model()
    save_model(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WorldmotError, match="model.safetensors"):
        worldmot.load(tmp_path / "m")
    with pytest.raises(WorldmotError, match="model.safetensors: missing"):
        worldmot.load(tmp_path / "nothing")


def test_rollout_past_the_training_window_restarts_from_the_newest_frame():
    """n_steps=3 trains 2 imagined frames; a 4-frame rollout is two chained 2-frame rollouts (one flow step
    is deterministic: at t=1 the noisy input is scaled to zero)."""
    model = make_model()
    batch = make_batch(model, B=2)
    actions = torch.rand(2, 4, 2, 2) * 2 - 1
    instr = ["reach the red target"] * 2
    with torch.no_grad():
        four, progress = imagination.rollout(model, instr, batch.frames[:, 0], actions, flow_steps=1)
        a, pa = imagination.rollout(model, instr, batch.frames[:, 0], actions[:, :2], flow_steps=1)
        b, pb = imagination.rollout(model, instr, a[:, -1], actions[:, 2:], flow_steps=1)
    assert four.shape == (2, 4, *batch.frames.shape[2:]) and progress.shape == (2, 5)
    torch.testing.assert_close(four, torch.cat([a, b], 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(progress, torch.cat([pa, pb[:, 1:]], 1), rtol=1e-5, atol=1e-5)


def test_gradients_are_bitwise_repeatable_on_two_cpu_threads():
    """A seeded CPU run must repeat exactly. The frame tokens' learned patch positions gather one table row per
    token (each row repeated once per frame); indexing's backward added those repeats in a thread-dependent
    order, and runs with the same seed drifted apart within 30 steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = small_config(image_size=64, patch_size=8)  # the tiny config's sizes: the backward runs in parallel
        cfg.width, cfg.heads = 128, 4
        model = make_model(cfg).train()
        batch = make_batch(model, B=8)
        inp = full_inputs(batch)
        _, first = loss_and_grads(model, batch, inp)
        for _ in range(5):
            _, again = loss_and_grads(model, batch, inp)
            assert all(torch.equal(a, b) for a, b in zip(first, again)), "gradients differ between identical calls"
    finally:
        torch.set_num_threads(threads)
