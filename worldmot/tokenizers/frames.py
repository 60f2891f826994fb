"""Frames: fit any camera to the model's square resolution (crop or letterbox), frame tokenizers.

Two tokenizers share one interface (``encode``, ``decode``, ``tokens_per_frame``, ``token_dim``, ``grid``):

- ``PatchTokenizer``: non-overlapping pixel patches (the CPU default, exact and parameter-free);
- ``LatentTokenizer``: patches of a diffusers ``AutoencoderKL`` latent, loaded from a local diffusers folder
  (worldmot/training/vae.py trains one on a dataset's frames); for larger images.

Pixel frames inside the model are float32 (..., 3, S, S) in [-1, 1].
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from worldmot.errors import WorldmotError
from worldmot.io import atomic_dir

# =====================================================================================================
# Pixels in and out
# =====================================================================================================


RESIZE_RULES = ("crop", "letterbox")


def fit_frames(frames, image_size: int, resize: str = "crop") -> np.ndarray:
    """uint8 (N, H, W, C) or (H, W, C) frames of any size -> uint8 (N, S, S, 3), by one of two rules:

    - ``crop``: the centred square of side min(H, W), resized to S x S (the same as resizing the short side to
      S and centre-cropping, without rounding the long side): the whole square is seen, the long side's ends
      are lost;
    - ``letterbox``: the whole frame, its long side resized to S and the short side padded with black bars
      centred on it: nothing is lost, the bars cost pixels.

    OpenCV area interpolation when shrinking (no aliasing), bilinear when enlarging; a square frame of side
    S is returned as it is under both rules. C may be 3 (RGB), 1 (grey, repeated) or 4 (alpha dropped).
    numpy or torch in (any device).
    """
    if resize not in RESIZE_RULES:
        raise WorldmotError(f"resize={resize!r}: expected one of {list(RESIZE_RULES)}")
    a = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise WorldmotError(f"frames: expected (N, H, W, 3) or (H, W, 3) images, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise WorldmotError(f"frames: expected uint8 pixels, got {a.dtype}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    return _crop_square(a, int(image_size)) if resize == "crop" else _letterbox(a, int(image_size))


def fit_points(uv, height: int, width: int, image_size: int, resize: str = "crop") -> np.ndarray:
    """Image points (..., 2N) as (u, v) pairs in [0, 1] of an H x W frame -> the same points in [0, 1] of the
    S x S frame :func:`fit_frames` makes of it by ``resize``, with its integer crop offsets and bar sizes (crop:
    points outside the square fall outside [0, 1]). A square frame's points are returned as they are."""
    if resize not in RESIZE_RULES:
        raise WorldmotError(f"resize={resize!r}: expected one of {list(RESIZE_RULES)}")
    p = np.asarray(uv, np.float32)
    if height == width:
        return p
    # the fitted image's side, the source's size in its pixels, and where the source's origin lands in it
    if resize == "crop":
        side = min(height, width)
        span, origin = (width, height), (-((width - side) // 2), -((height - side) // 2))
    else:
        side, long = int(image_size), max(height, width)
        rh, rw = max(1, round(height * side / long)), max(1, round(width * side / long))
        span, origin = (rw, rh), ((side - rw) // 2, (side - rh) // 2)
    scale, offset = np.array(span, np.float32), np.array(origin, np.float32)
    pairs = p.reshape(*p.shape[:-1], -1, 2)
    return ((pairs * scale + offset) / side).reshape(p.shape).astype(np.float32)


def _resize_each(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, h, w, 3), area interpolation when shrinking, bilinear when enlarging."""
    if a.shape[1:3] == (h, w):
        return a
    interp = cv2.INTER_AREA if a.shape[1] * a.shape[2] > h * w else cv2.INTER_LINEAR
    out = np.empty((a.shape[0], h, w, 3), dtype=np.uint8)
    for i in range(a.shape[0]):
        out[i] = cv2.resize(np.ascontiguousarray(a[i]), (w, h), interpolation=interp)
    return out


def _crop_square(a: np.ndarray, s: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the centred square of side min(H, W) resized to (N, s, s, 3)."""
    _, h, w, _ = a.shape
    m = min(h, w)
    y0, x0 = (h - m) // 2, (w - m) // 2
    return _resize_each(a[:, y0 : y0 + m, x0 : x0 + m], s, s)


def _letterbox(a: np.ndarray, s: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, s, s, 3): the long side resized to s, the short side centred between black bars."""
    _, h, w, _ = a.shape
    rh, rw = max(1, round(h * s / max(h, w))), max(1, round(w * s / max(h, w)))
    out = np.zeros((a.shape[0], s, s, 3), dtype=np.uint8)
    y0, x0 = (s - rh) // 2, (s - rw) // 2
    out[:, y0 : y0 + rh, x0 : x0 + rw] = _resize_each(a, rh, rw)
    return out


def preprocess_frames(frames, image_size: int, resize: str = "crop") -> torch.Tensor:
    """uint8 (N, H, W, C) or (H, W, C) frames of any size -> float32 (N, 3, S, S) in [-1, 1], fitted to S x S
    by ``resize`` (:func:`fit_frames`). numpy or torch in (any device); a CPU tensor out."""
    fitted = fit_frames(frames, image_size, resize)
    x = torch.from_numpy(np.ascontiguousarray(fitted)).permute(0, 3, 1, 2).to(torch.float32)
    return (x / 127.5 - 1.0).contiguous()


def to_uint8(frames) -> np.ndarray:
    """float (N, 3, S, S) or (3, S, S) in [-1, 1] -> uint8 (N, S, S, 3) (values outside are clipped)."""
    x = frames.detach().cpu() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise WorldmotError(f"frames: expected (N, 3, S, S) in [-1, 1], got shape {tuple(x.shape)}")
    x = ((x.to(torch.float32) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


# =====================================================================================================
# Patches
# =====================================================================================================


def _patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., (H/p)*(W/p), p*p*C); row-major patches, each (p, p, C) flattened."""
    *lead, c, h, w = x.shape
    x = x.reshape(-1, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(*lead, (h // p) * (w // p), p * p * c)


def _unpatchify(t: torch.Tensor, p: int, c: int, rows: int, cols: int) -> torch.Tensor:
    """Inverse of ``_patchify``: (..., rows*cols, p*p*c) -> (..., c, rows*p, cols*p)."""
    *lead, n, d = t.shape
    if n != rows * cols or d != p * p * c:
        raise WorldmotError(f"frame tokens: expected (..., {rows * cols}, {p * p * c}), got {tuple(t.shape)}")
    x = t.reshape(-1, rows, cols, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(*lead, c, rows * p, cols * p)


class FrameTokenizer(Protocol):
    """What the model needs from a frame tokenizer."""

    image_size: int

    @property
    def tokens_per_frame(self) -> int: ...

    @property
    def token_dim(self) -> int: ...

    @property
    def grid(self) -> tuple[int, int]: ...

    def encode(self, frames: torch.Tensor) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor) -> torch.Tensor: ...


class PatchTokenizer:
    """Pixels to non-overlapping patches: (..., C, S, S) <-> (..., P, p*p*C), P = (S/p)^2, exact inverse."""

    def __init__(self, image_size: int, patch_size: int, channels: int = 3) -> None:
        if image_size < 1 or patch_size < 1 or image_size % patch_size:
            raise WorldmotError(f"frames: image_size {image_size} is not divisible by patch_size {patch_size}")
        self.image_size, self.patch_size, self.channels = int(image_size), int(patch_size), int(channels)

    @property
    def grid(self) -> tuple[int, int]:
        n = self.image_size // self.patch_size
        return n, n

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def token_dim(self) -> int:
        return self.patch_size * self.patch_size * self.channels

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., C, S, S) -> (..., P, token_dim)."""
        s, c = self.image_size, self.channels
        if frames.ndim < 3 or tuple(frames.shape[-3:]) != (c, s, s):
            raise WorldmotError(f"frames: expected (..., {c}, {s}, {s}), got {tuple(frames.shape)}")
        return _patchify(frames, self.patch_size)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., P, token_dim) -> (..., C, S, S)."""
        return _unpatchify(tokens, self.patch_size, self.channels, *self.grid)

    def __repr__(self) -> str:
        return f"PatchTokenizer(image_size={self.image_size}, patch_size={self.patch_size}, channels={self.channels})"


# =====================================================================================================
# Latents (diffusers AutoencoderKL)
# =====================================================================================================

_SIDECAR = "worldmot_latent.json"  # image_size and latent_patch_size next to the diffusers files


class LatentTokenizer:
    """Patches of a (frozen) AutoencoderKL latent, scaled to about unit standard deviation.

    tokens = patchify((latent_mean - shift) * scale, latent_patch_size); shift/scale are the VAE config's
    ``shift_factor``/``scaling_factor`` (the diffusers convention), measured on the dataset when the VAE
    is trained here. A token covers ``down * latent_patch_size`` pixels per side (down = 2^(blocks-1)).
    """

    def __init__(self, vae, image_size: int, latent_patch_size: int = 1, batch_size: int = 64) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.down = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = int(vae.config.latent_channels)
        self.image_size, self.latent_patch_size, self.batch_size = int(image_size), int(latent_patch_size), batch_size
        footprint = self.down * self.latent_patch_size
        if self.latent_patch_size < 1 or self.image_size % footprint:
            raise WorldmotError(
                f"latent tokenizer: image_size {image_size} is not divisible by {footprint} "
                f"(VAE downsampling {self.down} x latent_patch_size {latent_patch_size})"
            )
        self.train_history: list[float] = []

    # ---------------------------------------------------------------- geometry

    @property
    def grid(self) -> tuple[int, int]:
        n = self.image_size // (self.down * self.latent_patch_size)
        return n, n

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def token_dim(self) -> int:
        return self.latent_channels * self.latent_patch_size**2

    @property
    def shift(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def to(self, device) -> LatentTokenizer:
        self.vae.to(device)
        return self

    # ---------------------------------------------------------------- encode / decode

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) in [-1, 1] -> (..., P, token_dim), on the input's device."""
        s = self.image_size
        if frames.ndim < 3 or tuple(frames.shape[-3:]) != (3, s, s):
            raise WorldmotError(f"frames: expected (..., 3, {s}, {s}), got {tuple(frames.shape)}")
        lead, x = frames.shape[:-3], frames.reshape(-1, 3, s, s)
        if len(x) == 0:
            return frames.new_zeros(*lead, self.tokens_per_frame, self.token_dim)
        z = torch.cat([self._latent_mean(b) for b in x.split(self.batch_size)])
        tokens = _patchify((z - self.shift) * self.scale, self.latent_patch_size)
        return tokens.reshape(*lead, *tokens.shape[1:]).to(frames.device)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., P, token_dim) -> (..., 3, S, S) in [-1, 1], on the input's device."""
        z = _unpatchify(tokens, self.latent_patch_size, self.latent_channels, *self.grid)
        lead = z.shape[:-3]
        z = z.reshape(-1, *z.shape[-3:]) / self.scale + self.shift
        dev, dt = self.device, next(self.vae.parameters()).dtype
        out = [self.vae.decode(b.to(dev, dt)).sample.clamp(-1, 1) for b in z.split(self.batch_size)]
        out = [b.to(tokens.device, torch.float32) for b in out]
        if not out:
            return tokens.new_zeros(*lead, 3, self.image_size, self.image_size)
        return torch.cat(out).reshape(*lead, 3, self.image_size, self.image_size)

    def _latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        dev, dt = self.device, next(self.vae.parameters()).dtype
        return self.vae.encode(x.to(dev, dt)).latent_dist.mean.to(torch.float32)

    def reconstruction_error(self, frames: torch.Tensor) -> float:
        """Mean squared error of decode(encode(frames)) in [-1, 1] pixel units."""
        return float(((self.decode(self.encode(frames)) - frames) ** 2).mean())

    # ---------------------------------------------------------------- save / load

    def save(self, path: str) -> None:
        """A diffusers folder (``save_pretrained``, scaling in its config) plus ``worldmot_latent.json``.

        Written to a temporary folder next to ``path`` and renamed, so a failed save leaves nothing half-written.
        """
        def write(tmp: Path) -> None:
            self.vae.save_pretrained(str(tmp))
            with open(tmp / _SIDECAR, "w") as f:
                json.dump({"image_size": self.image_size, "latent_patch_size": self.latent_patch_size}, f, indent=2)

        atomic_dir(os.path.abspath(path), write)

    @classmethod
    def from_pretrained(
        cls, path: str, image_size: int | None = None, latent_patch_size: int | None = None
    ) -> LatentTokenizer:
        """Load a local diffusers AutoencoderKL folder (or a pipeline folder with a ``vae/`` subfolder).

        ``image_size``/``latent_patch_size`` default to the values saved by ``save``; a folder from
        elsewhere needs ``image_size``.
        """
        if not os.path.isdir(path):
            raise WorldmotError(f"latent tokenizer folder not found: {path}")
        folder = path
        if not os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(os.path.join(path, "vae")):
            folder = os.path.join(path, "vae")  # a diffusers pipeline folder
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise WorldmotError(f"{path}: not a diffusers AutoencoderKL folder (no config.json)")
        saved = {}
        if os.path.isfile(os.path.join(folder, _SIDECAR)):
            with open(os.path.join(folder, _SIDECAR)) as f:
                saved = json.load(f)
        image_size = image_size or saved.get("image_size")
        if not image_size:
            raise WorldmotError(f"{path}: no {_SIDECAR}; pass image_size")
        from diffusers import AutoencoderKL

        try:
            # low_cpu_mem_usage would need accelerate and only saves time on large models
            # safetensors only: a .bin would go through torch.load, which unpickles
            vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False,
                                                use_safetensors=True)
        except (OSError, ValueError) as e:
            raise WorldmotError(f"{path}: cannot load AutoencoderKL ({str(e).splitlines()[0]})") from e
        return cls(vae, image_size, latent_patch_size or saved.get("latent_patch_size", 1))

    @torch.no_grad()
    def calibrate(self, frames: torch.Tensor, max_frames: int = 1024) -> None:
        """Set shift/scale so the dataset's tokens have mean 0 and standard deviation 1."""
        x = frames[:max_frames]
        z = torch.cat([self._latent_mean(b) for b in x.split(self.batch_size)])
        self.vae.register_to_config(shift_factor=float(z.mean()), scaling_factor=float(1.0 / z.std().clamp_min(1e-6)))

    def __repr__(self) -> str:
        return (
            f"LatentTokenizer(image_size={self.image_size}, down={self.down}, latent_channels={self.latent_channels}, "
            f"latent_patch_size={self.latent_patch_size})"
        )


# =====================================================================================================
# Factory
# =====================================================================================================

FRAME_TOKENIZERS = ("patch", "latent")


def make_frame_tokenizer(
    kind: str, image_size: int, patch_size: int, latent_path: str = ""
) -> PatchTokenizer | LatentTokenizer:
    """"patch" or "latent". ``patch_size`` is a token's footprint in pixels for both kinds, so switching
    kind keeps the number of tokens per frame: the latent kind uses latent_patch_size = patch_size / down.
    """
    if kind == "patch":
        return PatchTokenizer(image_size, patch_size)
    if kind == "latent":
        if not latent_path:
            raise WorldmotError("frame tokenizer 'latent' needs latent_path: a local diffusers AutoencoderKL folder")
        tok = LatentTokenizer.from_pretrained(latent_path, image_size=image_size)
        if patch_size % tok.down:
            raise WorldmotError(
                f"frame tokenizer 'latent': patch_size {patch_size} is not a multiple of "
                f"the VAE downsampling {tok.down}"
            )
        return LatentTokenizer(tok.vae, image_size, patch_size // tok.down)
    raise WorldmotError(f"unknown frame tokenizer {kind!r}; choices: {', '.join(FRAME_TOKENIZERS)}")
