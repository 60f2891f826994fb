"""The GPU training path: the compiled trunk (SDPA, flex attention, or SDPA in query chunks) gives the eager loss
and gradients; a training step never waits for the GPU.

GPU only: skipped where torch sees no CUDA device (CI); run on a GPU machine with ``pytest tests/test_gpu_training.py``.
"""
from __future__ import annotations

import pytest
import torch
from model_fixtures import full_inputs, loss_and_grads, make_batch, make_model, small_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("scope, attention, tile", [("layer", "sdpa", 0), ("blocks", "sdpa", 0), ("layer", "flex", 0),
                                                     ("layer", "sdpa", 16)])
def test_compiled_trunk_on_cuda_computes_the_eager_loss_and_gradients(scope, attention, tile):
    """tile: model.attention_query_tile (query tiles over the keys each may see), compared with eager masked SDPA."""
    model = make_model(small_config(keypoints=2)).cuda().train()
    batch = make_batch(model, B=4).to("cuda")
    inp = full_inputs(batch)
    want, want_grads = loss_and_grads(model, batch, inp)
    torch._dynamo.reset()
    model.trunk.query_tile = tile
    model.trunk.compile(scope, attention=attention)
    got, got_grads = loss_and_grads(model, batch, inp)
    # inductor's kernels reorder fp32 sums (and may multiply in TF32): not bit-identical
    torch.testing.assert_close(got, want, rtol=2e-3, atol=1e-5)
    for (name, _), g, w in zip(model.named_parameters(), got_grads, want_grads):
        assert float((g - w).norm()) <= 1e-2 * float(w.norm()) + 1e-6, name


def test_training_steps_queue_without_waiting_for_the_gpu():
    """The loop's step (train_step: randomness, a batch packed on the CPU, forward, backward, clipping, the finite
    check, fused AdamW, EMA) never reads the GPU back: each read left the GPU idle while the host prepared the
    next step (base's step waited ~50 ms of 337 before). Logging, validation and checkpoints read it, every N
    steps."""
    from model_fixtures import make_windows
    from worldmot.training.config import TrainConfig
    from worldmot.training.ema import WarmupEMA
    from worldmot.training.finite import FiniteLossCheck
    from worldmot.training.loop import Dist, make_optimizer, train_step

    model = make_model(small_config(keypoints=2)).cuda().train()
    cfg = TrainConfig(run_dir="unused", batch_size=4, model=model.cfg)
    ema, opt = WarmupEMA(model, 0.99), make_optimizer(model, cfg)
    finite = FiniteLossCheck(torch.device("cuda"), ("ce", "fm", "st", "kp"), lambda: None)
    proc = Dist(device=torch.device("cuda"))

    def collated(seed: int) -> dict:  # as the loader gives them: on the CPU
        windows, frames, states = make_windows(model.cfg, cfg.batch_size, seed)
        return {**{k: [w[k] for w in windows] for k in windows[0]}, "frames": torch.from_numpy(frames),
                "states": torch.from_numpy(states)}

    train_step(model, model, opt, ema, finite, collated(0), 0, cfg, proc)  # makes the optimiser state, reads the EMA count
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in (1, 2):
            train_step(model, model, opt, ema, finite, collated(step), step, cfg, proc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    finite.flush()


def test_a_non_finite_step_on_cuda_is_skipped_on_the_gpu_and_reported_by_the_next_read():
    from worldmot.errors import WorldmotError
    from worldmot.training.finite import FiniteLossCheck

    param = torch.nn.Parameter(torch.ones(3, device="cuda"))
    opt = torch.optim.AdamW([param], lr=0.1, fused=True)
    finite = FiniteLossCheck(torch.device("cuda"), ("ce",), lambda: "RUN/checkpoints/step_00000004")
    param.grad = torch.full_like(param, float("nan"))
    finite.check(4, torch.tensor([float("nan"), float("nan")], device="cuda"), opt)  # queued, not read yet
    opt.step()
    assert torch.equal(param.detach().cpu(), torch.ones(3)), "the update of a non-finite step was applied"
    assert float(opt.state[param]["exp_avg"].abs().sum()) == 0.0
    with pytest.raises(WorldmotError, match=r"step 5: non-finite ce loss .*step_00000004"):
        finite.flush()
