"""The GPU training path: the compiled trunk (with SDPA or flex attention) gives the eager loss and gradients.

GPU only: skipped where torch sees no CUDA device (CI); run on a GPU machine with ``pytest tests/test_gpu_training.py``.
"""
from __future__ import annotations

import pytest
import torch
from model_fixtures import full_inputs, loss_and_grads, make_batch, make_model, small_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("scope, attention", [("layer", "sdpa"), ("blocks", "sdpa"), ("layer", "flex")])
def test_compiled_trunk_on_cuda_computes_the_eager_loss_and_gradients(scope, attention):
    model = make_model(small_config(keypoints=2)).cuda().train()
    batch = make_batch(model, B=4).to("cuda")
    inp = full_inputs(batch)
    want, want_grads = loss_and_grads(model, batch, inp)
    torch._dynamo.reset()
    model.trunk.compile(scope, attention=attention)
    got, got_grads = loss_and_grads(model, batch, inp)
    # inductor's kernels reorder fp32 sums (and may multiply in TF32): not bit-identical
    torch.testing.assert_close(got, want, rtol=2e-3, atol=1e-5)
    for (name, _), g, w in zip(model.named_parameters(), got_grads, want_grads):
        assert float((g - w).norm()) <= 1e-2 * float(w.norm()) + 1e-6, name
