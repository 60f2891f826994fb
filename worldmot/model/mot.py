"""The Mixture-of-Transformers trunk: per-modality experts, one global attention.

Each expert owns every non-embedding parameter of its tokens (adaLN modulation, norms, Q/K/V/O, QK-norm,
feed-forward, final norm). Attention is global: all tokens' Q/K/V meet in one masked SDPA call.

Routing without data-dependent shapes: a segment's layout is static, so its tokens are permuted ONCE
(at the input) into expert-contiguous order -- expert by expert, clean tokens before noisy ones, original
order inside. Every expert then works on a plain slice, attention runs on the permuted sequence with the
permuted mask (attention does not care about order, only about the mask and the positions, which were
added to the embeddings before the permutation), and the output is permuted back. The dense baseline is
the same code with one expert.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmot.sequence import MODALITIES, Segment, attention_mask


# ----------------------------------------------------------------------------------------------------
# Routing plan (built once per segment layout and expert map)
# ----------------------------------------------------------------------------------------------------

@dataclass
class ExpertSlice:
    """The permuted positions [start, end) of one expert; its noisy tokens are [first_noisy, end)."""

    name: str
    start: int
    end: int
    first_noisy: int
    noisy_frame: torch.Tensor  # (end - first_noisy,) index j of each noisy token's frame in the segment


@dataclass
class RoutingPlan:
    perm: torch.Tensor  # (n,) segment position of the i-th token in expert-contiguous order
    inverse: torch.Tensor  # (n,) inverse permutation
    slices: list[ExpertSlice]
    block: torch.Tensor  # (n,) block ids in permuted order (for masks against a cache)
    noisy: torch.Tensor  # (n,) bool, permuted
    mask: torch.Tensor  # (n, n) bool, permuted


def build_plan(seg: Segment, experts: dict[str, str], expert_names: list[str], device: torch.device) -> RoutingPlan:
    modality = seg.arr("modality")
    noisy = seg.arr("noisy")
    expert_id = np.array([expert_names.index(experts[MODALITIES[m]]) for m in modality])
    perm = np.lexsort((np.arange(seg.length), noisy, expert_id))  # last key is primary
    step = seg.arr("step")
    noisy_steps = np.unique(step[noisy])  # J noisy frames, numbered in segment order
    slices = []
    for e, name in enumerate(expert_names):
        idx = np.nonzero(expert_id[perm] == e)[0]
        if len(idx):
            start, end = int(idx[0]), int(idx[-1]) + 1
            first_noisy = start + int((~noisy[perm][start:end]).sum())
            j = np.searchsorted(noisy_steps, step[perm][first_noisy:end])
            slices.append(ExpertSlice(name, start, end, first_noisy, torch.as_tensor(j, device=device, dtype=torch.long)))
    block = torch.as_tensor(seg.arr("block")[perm], device=device)
    noisy_t = torch.as_tensor(noisy[perm], device=device)
    return RoutingPlan(
        perm=torch.as_tensor(perm, device=device),
        inverse=torch.as_tensor(np.argsort(perm), device=device),
        slices=slices,
        block=block,
        noisy=noisy_t,
        mask=attention_mask(block, noisy_t, block, noisy_t),
    )


# ----------------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------------

@dataclass
class KVCache:
    """Per layer keys/values (B, H, L, dh) of clean context tokens, with their block ids (L,)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    block: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.block.shape[0])

    def expand(self, n: int) -> "KVCache":
        """Repeat a batch-1 cache for n candidates (views, no copy until the cache is extended)."""
        return KVCache([k.expand(n, -1, -1, -1) for k in self.keys], [v.expand(n, -1, -1, -1) for v in self.values], self.block)

    def repeat_interleave(self, n: int) -> "KVCache":
        """Each of B contexts repeated n times: (B*n, H, L, dh)."""
        return KVCache([k.repeat_interleave(n, 0) for k in self.keys], [v.repeat_interleave(n, 0) for v in self.values], self.block)


# ----------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------

def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def identity_modulation(k: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, k*D) modulation of clean tokens: shift 0, scale 0 and, for a block's 6 chunks, gates 1.

    Only noisy frames are conditioned on time (adaLN-zero, as in DiT); every clean token has t = 0, so a
    learned modulation would be a constant, and with zero-initialised gates the action path learned to
    switch itself off (action logits identical across samples after 700 steps, measured).
    """
    mod = torch.zeros(k, width, device=like.device, dtype=like.dtype)
    if k == 6:
        mod[2] = mod[5] = 1.0  # gate1, gate2
    return mod.reshape(1, 1, -1)


def _rms(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """norm(x) with the weight in x's dtype: under bf16 autocast an fp32 weight keeps torch off its fused kernel."""
    return F.rms_norm(x, norm.normalized_shape, norm.weight.to(x.dtype), norm.eps)


class ExpertBlock(nn.Module):
    """One layer of one expert: adaLN-zero modulation, QKV with QK-norm, output projection, MLP.

    ``ada`` exists only on an expert that receives frame tokens, the only tokens that can be noisy: an
    unused module would hold parameters that never get a gradient (DDP refuses them, AdamW decays them).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, time_conditioned: bool = True):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.out = nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width) if time_conditioned else None

    def qkv_of(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, n, D) -> q, k, v each (B, H, n, dh)."""
        B, n, D = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), shift, scale)).view(B, n, 3, self.heads, D // self.heads).unbind(2)
        return _rms(self.q_norm, q).transpose(1, 2), _rms(self.k_norm, k).transpose(1, 2), v.transpose(1, 2)

    def finish(self, x: torch.Tensor, attn: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Residual updates after attention: x, attn (B, n, D) -> (B, n, D)."""
        _, _, gate1, shift2, scale2, gate2 = mod
        x = x + gate1 * self.out(attn)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalNorm(nn.Module):
    """The expert's last adaLN norm (shift, scale) before the shared output heads."""

    def __init__(self, width: int, time_conditioned: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width) if time_conditioned else None

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """x (B, n, D), mod (B, n, 2D) from ``self.ada`` -> (B, n, D)."""
        shift, scale = mod.chunk(2, dim=-1)
        return modulate(self.norm(x), shift, scale)


class MoTTrunk(nn.Module):
    """depth layers x experts. ``run`` maps segment-ordered embeddings to segment-ordered hidden states."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float, experts: dict[str, str]):
        super().__init__()
        assert width % heads == 0, "width must be divisible by heads"
        self.experts = dict(experts)
        self.expert_names = sorted(set(experts.values()))
        self.heads = heads
        timed = {experts["frame"]}
        self.layers = nn.ModuleList(
            nn.ModuleDict({e: ExpertBlock(width, heads, mlp_ratio, e in timed) for e in self.expert_names})
            for _ in range(depth)
        )
        self.final = nn.ModuleDict({e: FinalNorm(width, e in timed) for e in self.expert_names})
        self.width = width
        self._plans: dict[tuple, RoutingPlan] = {}

    def initialize(self) -> None:
        """adaLN-zero for noisy frames: their residual branches and final modulation start at zero (DiT)."""
        for layer in self.layers:
            for block in layer.values():
                nn.init.xavier_uniform_(block.qkv.weight)
                nn.init.zeros_(block.qkv.bias)
                for lin in (block.out, block.mlp[0], block.mlp[2]):
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.zeros_(lin.bias)
                if block.ada is not None:
                    nn.init.zeros_(block.ada.weight)
                    nn.init.zeros_(block.ada.bias)
        for fin in self.final.values():
            if fin.ada is not None:
                nn.init.zeros_(fin.ada.weight)
                nn.init.zeros_(fin.ada.bias)

    def plan(self, seg: Segment, device: torch.device) -> RoutingPlan:
        key = seg.key + (device.type,)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build_plan(seg, self.experts, self.expert_names, device)
        return plan

    def _per_token(self, sl: ExpertSlice, B: int, ada: nn.Linear | None, k: int, noisy: torch.Tensor | None,
                   like: torch.Tensor) -> torch.Tensor:
        """Modulation vectors (B, n_e, k*D) of a slice's tokens. ``ada`` runs on the J noisy-frame times only
        (not per token, which would cost as much as the MLP); clean tokens get :func:`identity_modulation`."""
        parts = [identity_modulation(k, self.width, like).expand(B, sl.first_noisy - sl.start, -1)]
        if sl.end > sl.first_noisy:
            assert noisy is not None, "noisy tokens need their diffusion time"
            parts.append(ada(noisy)[:, sl.noisy_frame])
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def run(self, seg: Segment, x: torch.Tensor, noisy_cond: torch.Tensor | None = None,
            cache: KVCache | None = None, append: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        """Run one segment.

        x: (B, n, D) embeddings in segment order; noisy_cond: (B, J, D) time vectors of the segment's J noisy frames; cache: keys/values of earlier
        clean tokens (seen by every query of the segment, as the mask rule says). With append=True the
        segment's keys/values are appended to a new cache that is returned.
        Returns hidden states (B, n, D) in segment order, and the extended cache (or the input cache).
        """
        plan = self.plan(seg, x.device)
        B = x.shape[0]
        assert not (append and bool(plan.noisy.any())), "noisy tokens never enter the cache"
        x = x[:, plan.perm]
        noisy_cond = F.silu(noisy_cond) if noisy_cond is not None else None
        mask = plan.mask
        if cache is not None:
            past = attention_mask(plan.block, plan.noisy, cache.block, torch.zeros_like(cache.block, dtype=torch.bool))
            mask = torch.cat([past, mask], dim=1)
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            mods, qs, ks, vs = [], [], [], []
            for sl in plan.slices:
                block = layer[sl.name]
                mod = self._per_token(sl, B, block.ada, 6, noisy_cond, x).chunk(6, dim=-1)
                q, k, v = block.qkv_of(x[:, sl.start:sl.end], mod[0], mod[1])
                mods.append(mod)
                qs.append(q), ks.append(k), vs.append(v)
            q, k, v = torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2)
            if append:
                new_keys.append(k), new_values.append(v)
            if cache is not None:
                k = torch.cat([cache.keys[i].expand(B, -1, -1, -1), k], 2)
                v = torch.cat([cache.values[i].expand(B, -1, -1, -1), v], 2)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, dh)
            attn = attn.transpose(1, 2).reshape(x.shape)
            x = torch.cat([layer[sl.name].finish(x[:, sl.start:sl.end], attn[:, sl.start:sl.end], mod)
                           for sl, mod in zip(plan.slices, mods)], dim=1)
        x = torch.cat([self.final[sl.name](x[:, sl.start:sl.end],
                                           self._per_token(sl, B, self.final[sl.name].ada, 2, noisy_cond, x))
                       for sl in plan.slices], dim=1)
        out = x[:, plan.inverse]
        if not append:
            return out, cache
        if cache is None:
            return out, KVCache(new_keys, new_values, plan.block)
        keys = [torch.cat([ck.expand(B, -1, -1, -1), nk], 2) for ck, nk in zip(cache.keys, new_keys)]
        values = [torch.cat([cv.expand(B, -1, -1, -1), nv], 2) for cv, nv in zip(cache.values, new_values)]
        return out, KVCache(keys, values, torch.cat([cache.block, plan.block]))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion times t in [0, 1] (any shape) -> (*t.shape, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def position_embedding(pos: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Fixed sinusoidal embedding of integer 1-D positions (n,) -> (n, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    args = pos.float()[:, None] * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
