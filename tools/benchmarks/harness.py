"""What the benchmarks share: fresh models of the built-in configs with chosen expert routings, synthetic
training batches, device synchronisation for timing and a profiler summary.

Imported by the scripts beside it (Python puts a script's own folder on sys.path); not a benchmark itself.
"""
from __future__ import annotations

import numpy as np
import torch

from worldmot.config import ModelConfig, load_config
from worldmot.model.world_model import WorldModel
from worldmot.sequence import pack_windows
from worldmot.tokenizers.actions import ActionTokenizer

EXPERTS = {
    "full MoT": {"text": "text", "action": "action", "state": "action", "frame": "frame"},
    "two-path MoT": {"text": "ar", "action": "ar", "state": "ar", "frame": "dit"},
    "dense": {"text": "shared", "action": "shared", "state": "shared", "frame": "shared"},
}


def build(model_name: str, experts: dict, device: str, seed: int = 0, overrides: list[str] = (), **sizes: int,
          ) -> WorldModel:
    """A fresh model of a named config; ``overrides`` are its keys as the CLI takes them ("block_bias=true"),
    ``sizes`` override its fields (width=384, depth=1, ...)."""
    torch.manual_seed(seed)
    cfg = named_model_config(model_name, overrides)
    cfg.experts = dict(experts)
    for name, value in sizes.items():
        setattr(cfg, name, value)
    A = cfg.sequence.action_dim
    return WorldModel(cfg, ActionTokenizer(-np.ones(A), np.ones(A), cfg.sequence.action_bins)).to(device)


def named_model_config(name: str, overrides: list[str] = ()) -> ModelConfig:
    """A built-in model config by name (configs/model/NAME.yaml), with ``model.KEY=VALUE`` overrides applied."""
    from dataclasses import dataclass, field

    @dataclass
    class W:
        model: ModelConfig = field(default_factory=ModelConfig)

    return load_config(W, overrides=[f"model={name}", *(f"model.{o}" for o in overrides)]).model


def random_batch(model: WorldModel, B: int, seed: int = 0):
    """B synthetic training windows packed as the loader packs them: the timing depends on shapes, not content."""
    s = model.cfg.sequence
    rng = np.random.default_rng(seed)
    K = s.n_steps
    windows = [dict(instruction="push the blue block onto the green pad", subtasks=["move behind the blue block"] * K,
                    actions=rng.uniform(-1, 1, (K, s.chunk, s.action_dim)).astype(np.float32),
                    progress=rng.uniform(0, 1, K).astype(np.float32), success=np.zeros(K, bool)) for _ in range(B)]
    frames = rng.integers(0, 256, (B, K, s.image_size, s.image_size, 3), dtype=np.uint8)
    return pack_windows(windows, cfg=s, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                        action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames).cpu(),
                        states=torch.as_tensor(rng.normal(size=(B, K, s.state_dim)), dtype=torch.float32))


def count_cpu_attention() -> None:
    """Teach FlopCounterMode the CPU's flash attention (forward and backward), which it does not count: with the
    CUDA kernels' formulas, over the whole n x n product. Once per process; a no-op where torch counts it."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd in flop_registry:
        return
    register_flop_formula(fwd)(lambda q, k, v, *args, out_shape=None, **kw: sdpa_flop_count(q, k, v))
    register_flop_formula(bwd)(lambda g, q, k, v, *args, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v))


def sync(device: str) -> None:
    """Wait for the device's queued work, so that a wall-clock interval covers it."""
    if device == "cuda":
        torch.cuda.synchronize()


def print_profile(fn, device: str, rows: int = 15) -> None:
    """Run fn once under torch.profiler and print the ops that took the most device (or CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))
