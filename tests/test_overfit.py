"""Overfit one fixed batch: the whole model (AR path, diffusion path, cache, scheduler) can learn."""
from __future__ import annotations

import numpy as np
import torch

from model_fixtures import losses, make_model, make_windows, small_config
from worldmot.model import imagination
from worldmot.sequence import pack_windows


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of images in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


def smooth_frames(B, K, S, seed):
    """Frames with a moving square on a coloured background (random noise images cannot be learned smoothly)."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((B, K, S, S, 3), np.uint8)
    for b in range(B):
        frames[b] += rng.integers(30, 120, 3, dtype=np.uint8)
        x, y = rng.integers(2, S - 6, 2)
        for k in range(K):
            frames[b, k, y:y + 4, x + 2 * k:x + 2 * k + 4] = (230, 40, 40)
    return frames


def test_overfit_one_batch_then_generate_the_next_frame_and_actions():
    torch.manual_seed(0)
    cfg = small_config(n_steps=2)
    cfg.width, cfg.depth, cfg.heads = 64, 2, 4
    model = make_model(cfg, randomize=False).train()
    windows, _, states = make_windows(cfg, B=2, seed=0)
    frames = smooth_frames(2, 2, cfg.sequence.image_size, seed=0)
    for w in windows:
        w.update(progress=w["progress"][:2], success=w["success"][:2], subtasks=w["subtasks"][:2], actions=w["actions"][:2])
    tokens = model.tokenize_frames(frames)
    batch = pack_windows(windows, cfg=cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                         action_tokenizer=model.action_tokenizer, frame_tokens=tokens, states=torch.as_tensor(states[:, :2]),
                         drop_state=np.ones((2, 2), bool))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    first = None
    for step in range(300):
        loss = losses(model, batch, generator=g)["loss"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = np.mean([float(losses(model, batch, generator=g)["loss"]) for _ in range(4)])
        assert final < 0.1 * first, f"loss fell from {first:.3f} to {final:.3f} only"
        assert float(losses(model, batch, generator=g)["st"]) < 0.01, "the state read off the frames (inputs dropped)"
        im = imagination.start(model, [w["instruction"] for w in windows], tokens[:, 0], horizon=1)
        actions, texts = imagination.write_step(im, reason=True)
        frame = imagination.imagine_frame(im, flow_steps=4, generator=torch.Generator().manual_seed(1))
    target = model.detokenize_frames(tokens[:, 1])
    assert psnr(model.detokenize_frames(frame), target) >= 25.0
    copy = psnr(model.detokenize_frames(tokens[:, 0]), target)
    assert psnr(model.detokenize_frames(frame), target) > copy + 3, "the model must beat copying the last frame"
    assert texts == [w["subtasks"][0] for w in windows]
    want = model.action_tokenizer.decode(model.action_tokenizer.encode(torch.as_tensor(np.stack([w["actions"][0] for w in windows]))))
    torch.testing.assert_close(actions, want)
