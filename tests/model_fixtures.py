"""Small models and batches shared by the model tests."""
from __future__ import annotations

import numpy as np
import torch

from worldmot.config import ModelConfig, SequenceConfig
from worldmot.model.world_model import SegmentInputs, WorldModel
from worldmot.sequence import PackedBatch, pack_windows
from worldmot.tokenizers.actions import ActionTokenizer
from worldmot.training.losses import WorldModelLoss

SUBTASKS = ["move to red", "push it", "done"]


def small_config(experts: dict | None = None, **seq) -> ModelConfig:
    s = SequenceConfig(n_steps=3, chunk=2, image_size=16, patch_size=4, action_dim=2, state_dim=3,
                       action_bins=32, progress_bins=8, instruction_len=24, reasoning_len=12)
    for k, v in seq.items():
        setattr(s, k, v)
    cfg = ModelConfig(width=32, depth=2, heads=2, mlp_ratio=2.0, sequence=s)
    if experts is not None:
        cfg.experts = experts
    return cfg


def make_model(cfg: ModelConfig | None = None, seed: int = 0, randomize: bool = True) -> WorldModel:
    """A model whose zero-initialised parts are randomised, so that every path carries signal."""
    torch.manual_seed(seed)
    cfg = cfg or small_config()
    dim = cfg.sequence.action_dim
    model = WorldModel(cfg, ActionTokenizer(-np.ones(dim), np.ones(dim), cfg.sequence.action_bins),
                       state_mean=np.zeros(cfg.sequence.state_dim), state_std=np.ones(cfg.sequence.state_dim))
    if randomize:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def make_windows(cfg: ModelConfig, B: int = 2, seed: int = 0) -> tuple[list[dict], np.ndarray, np.ndarray]:
    s = cfg.sequence
    rng = np.random.default_rng(seed)
    K = s.n_steps
    windows = [
        dict(instruction=["reach the red target", "push the blue block"][b % 2],
             subtasks=[SUBTASKS[(b + k) % 3] for k in range(K)],
             actions=rng.uniform(-1, 1, (K, s.chunk, s.action_dim)).astype(np.float32),
             progress=np.linspace(0, 0.9, K).astype(np.float32), success=np.arange(K) == K - 1)
        for b in range(B)
    ]
    cams = (s.cameras,) if s.cameras > 1 else ()  # several cameras: (B, K, Nc, S, S, 3)
    frames = rng.integers(0, 256, (B, K, *cams, s.image_size, s.image_size, 3), dtype=np.uint8)
    states = rng.normal(size=(B, K, s.state_dim)).astype(np.float32)
    return windows, frames, states


def make_batch(model: WorldModel, B: int = 2, seed: int = 0) -> PackedBatch:
    windows, frames, states = make_windows(model.cfg, B, seed)
    return pack_windows(windows, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                        action_tokenizer=model.action_tokenizer, frame_tokens=model.tokenize_frames(frames),
                        states=torch.as_tensor(states))


def losses(model: WorldModel, batch: PackedBatch, **kwargs) -> dict[str, torch.Tensor]:
    """The training losses {loss, ce, fm, st, kp} on ``batch`` (training/losses.py's WorldModelLoss)."""
    return WorldModelLoss(model)(batch, **kwargs)


def loss_and_grads(model: WorldModel, batch: PackedBatch, inp: SegmentInputs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The training loss on ``batch`` with the noise and times of ``inp`` (full_inputs), and every parameter's
    gradient (cloned)."""
    model.zero_grad()
    loss = losses(model, batch, t=inp.t, noise=inp.noisy)["loss"]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def full_inputs(batch: PackedBatch, seed: int = 0) -> SegmentInputs:
    """Inputs of the whole window with random noisy frames and times."""
    g = torch.Generator().manual_seed(seed)
    B, K = batch.frames.shape[:2]
    return SegmentInputs(batch.token_ids, batch.frames, batch.states, batch.state_dropped,
                         noisy=torch.randn(batch.frames[:, 1:].shape, generator=g), noisy_last=batch.frames[:, :-1],
                         t=torch.rand(B, K - 1, generator=g))
