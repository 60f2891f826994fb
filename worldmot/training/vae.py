"""Training a frame tokenizer's VAE: a small diffusers AutoencoderKL fitted to a dataset's frames.

The frame tokenizer (worldmot/tokenizers/frames.py's LatentTokenizer) only encodes and decodes; this fits the
autoencoder it wraps and measures the latent scale it needs.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from worldmot.errors import WorldmotError
from worldmot.tokenizers.frames import LatentTokenizer


def train_latent_tokenizer(
    frames,
    steps: int = 1000,
    batch_size: int = 16,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    latent_patch_size: int = 1,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> LatentTokenizer:
    """Train a small AutoencoderKL on (N, 3, S, S) frames in [-1, 1] and measure its latent scale.

    Loss: pixel MSE of the reconstruction from a sampled latent + ``kl_weight`` * KL (per-sample sum,
    the Stable Diffusion recipe without the perceptual and GAN terms). Default blocks (32, 64, 64)
    downsample 4x. ``train_history`` holds the reconstruction MSE of every step.
    """
    from diffusers import AutoencoderKL

    x_all = torch.as_tensor(frames, dtype=torch.float32)
    if x_all.ndim != 4 or x_all.shape[1] != 3 or x_all.shape[2] != x_all.shape[3] or len(x_all) == 0:
        raise WorldmotError(f"latent training: expected (N, 3, S, S) frames, got {tuple(x_all.shape)}")
    torch.manual_seed(seed)
    n = len(block_out_channels)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=math.gcd(32, *block_out_channels),
        sample_size=x_all.shape[-1],
    ).to(device)
    LatentTokenizer(vae, x_all.shape[-1], latent_patch_size)  # fails on a bad geometry before any training
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    bar = tqdm(range(steps), desc="latent tokenizer", disable=not progress)
    for step in bar:
        idx = torch.randint(len(x_all), (min(batch_size, len(x_all)),), generator=gen)
        x = x_all[idx].to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = torch.nn.functional.mse_loss(recon, x)
        loss = rec + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(rec.item())
        if step % 10 == 0:
            bar.set_postfix(mse=f"{history[-1]:.4f}")
    tok = LatentTokenizer(vae, x_all.shape[-1], latent_patch_size)  # eval mode, frozen
    tok.calibrate(x_all)
    tok.train_history = history
    return tok
