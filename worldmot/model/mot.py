"""The Mixture-of-Transformers trunk: per-modality experts, one global attention.

Each expert owns every non-embedding parameter of its tokens (adaLN modulation, norms, Q/K/V/O, QK-norm,
feed-forward, final norm). Attention is global: all tokens' Q/K/V meet in one masked attention (SDPA with the
boolean mask, flex attention on its tiles, or SDPA in query tiles over the keys each may see).

Routing without data-dependent shapes: a segment's layout is static, so its tokens are permuted ONCE
(at the input) into expert-contiguous order -- expert by expert (the frame expert first), clean tokens before
noisy ones, original order inside. Every expert then works on a plain slice (the stream is carried as one
tensor per slice), attention runs on the permuted sequence with the permuted mask (attention does not care
about order, only about the mask and the positions, which were added to the embeddings before the
permutation), and the output is permuted back. The dense baseline is the same code with one expert.

Axes (the legend of every file in worldmot/model; a dimension keeps its letter everywhere):
    B  batch (rollouts, candidates x envs)      n  tokens of a segment (n_e: of one expert slice)
    L  cached tokens (keys before a segment)    S  positions of a whole window's layout
    D  width                                    H  attention heads        dh  head width (D / H)
    K  frame steps of a window                  J  noisy frames of a segment, F: its clean frames
    Ns states of a segment                      Ds state dimensions
    P  patches (tokens) per camera image        Dp width of a patch token
    Nc cameras per frame step (a step's frame is Nc*P tokens, camera by camera; Nc = 1: P)
    C  actions per chunk                        A  action dimensions (C*A: a chunk's action values)
    N  named objects (keypoints, the effector last)                      V  vocabulary
Words: a "block" is a transformer block (:class:`ExpertBlock`); a "mask block" is a run of positions that see
each other (sequence.py's block ids); "tiles" cut the attention product (flex attention's square tiles, the
query tiles of query_tiles.py); a "chunk" is the C actions written per frame step.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from worldmot.model.query_tiles import TiledMask, tile_queries, tiled_attention
from worldmot.sequence import MODALITIES, Segment, attention_mask


# ----------------------------------------------------------------------------------------------------
# Routing (built once per segment layout and expert map)
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
class Routing:
    perm: torch.Tensor  # (n,) segment position of the i-th token in expert-contiguous order
    inverse: torch.Tensor  # (n,) inverse permutation
    slices: list[ExpertSlice]
    mask_blocks: torch.Tensor  # (n,) mask-block ids (sequence.py) in permuted order (for masks against a cache)
    noisy: torch.Tensor  # (n,) bool, permuted
    mask: torch.Tensor  # (n, n) bool, permuted
    has_noisy: bool  # known on the host: asking the device would stall every call until the GPU catches up
    host_mask: np.ndarray  # ``mask`` on the host
    # (n,) routed positions with the noisy frames first, then the clean tokens in segment order: the key order
    # of tiled attention, in which a query's keys are one run
    key_order: np.ndarray
    _flex_masks: dict[int, BlockMask] = field(default_factory=dict)
    _query_tiles: dict[int, TiledMask] = field(default_factory=dict)

    def query_tiles(self, size: int) -> TiledMask:
        """``mask`` as query tiles of at most ``size`` rows inside each expert slice's clean and noisy parts,
        each over the run of keys that covers what it may see (query_tiles.py; built once per size)."""
        if size not in self._query_tiles:
            bounds = [(a, b) for sl in self.slices for a, b in ((sl.start, sl.first_noisy), (sl.first_noisy, sl.end))
                      if b > a]
            self._query_tiles[size] = tile_queries(self.host_mask, bounds, size, self.key_order, self.mask.device)
        return self._query_tiles[size]

    def flex_mask(self, tile: int) -> BlockMask:
        """``mask`` for flex attention in tiles of tile x tile entries (built once per tile size): flex skips
        the tiles that the mask rules out and reads the mask only in the tiles that it cuts."""
        if tile not in self._flex_masks:
            mask, n = self.mask, int(self.mask.shape[0])
            self._flex_masks[tile] = create_block_mask(lambda b, h, q, kv: mask[q, kv], None, None, n, n,
                                                        device=mask.device, BLOCK_SIZE=tile)
        return self._flex_masks[tile]


def build_routing(seg: Segment, experts: dict[str, str], expert_names: list[str], device: torch.device) -> Routing:
    """The segment's routing; ``expert_names`` in the order of their slices."""
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
    blocks_host, noisy_host = torch.as_tensor(seg.arr("block")[perm]), torch.as_tensor(noisy[perm])
    mask = attention_mask(blocks_host, noisy_host, blocks_host, noisy_host)
    mask_blocks, noisy_t = blocks_host.to(device), noisy_host.to(device)
    return Routing(
        perm=torch.as_tensor(perm, device=device),
        inverse=torch.as_tensor(np.argsort(perm), device=device),
        slices=slices,
        mask_blocks=mask_blocks,
        noisy=noisy_t,
        mask=mask.to(device),
        has_noisy=bool(noisy.any()),
        host_mask=mask.numpy(),
        key_order=np.lexsort((perm, ~noisy[perm])),
    )


# the attention's mask: boolean (n, L + n), flex attention's tiles, or query tiles (no KV cache for the last two)
Mask = torch.Tensor | BlockMask | TiledMask


# ----------------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------------

@dataclass
class KVCache:
    """Per layer keys/values (B, H, L, dh) of clean context tokens, with their mask-block ids (L,)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask_blocks: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.mask_blocks.shape[0])

    def expand(self, n: int) -> "KVCache":
        """Repeat a batch-1 cache for n candidates (views, no copy until the cache is extended)."""
        return KVCache([k.expand(n, -1, -1, -1) for k in self.keys], [v.expand(n, -1, -1, -1) for v in self.values], self.mask_blocks)

    def repeat_interleave(self, n: int) -> "KVCache":
        """Each of B contexts repeated n times: (B*n, H, L, dh)."""
        return KVCache([k.repeat_interleave(n, 0) for k in self.keys], [v.repeat_interleave(n, 0) for v in self.values], self.mask_blocks)


# ----------------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------------

@dataclass
class Modulation:
    """adaLN-zero vectors of one expert slice (DiT): only noisy frames are conditioned on their diffusion time.

    Clean tokens (the first n_clean of the slice) have t = 0, so a learned modulation would be a constant; they
    get the identity (shift 0, scale 0, gate 1) without a tensor for it. With zero-initialised gates a learned
    clean modulation made the action path switch itself off (action logits identical across samples after
    700 steps, measured). ``vectors`` are k vectors (B, J, D) per noisy frame; ``frame`` (n_noisy,) maps each
    noisy token to its frame. None stands for a slice without noisy tokens.
    """

    vectors: tuple[torch.Tensor, ...]
    n_clean: int
    frame: torch.Tensor

    def shift_scale(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """h (B, n_e, D) -> h * (1 + scale) + shift on the noisy tokens, with vectors i and i + 1."""
        shift, scale = self.vectors[i][:, self.frame], self.vectors[i + 1][:, self.frame]
        return torch.cat([h[:, :self.n_clean], h[:, self.n_clean:] * (1 + scale) + shift], 1)

    def gate(self, y: torch.Tensor, i: int) -> torch.Tensor:
        """y (B, n_e, D) -> y * gate on the noisy tokens, with vector i."""
        return torch.cat([y[:, :self.n_clean], y[:, self.n_clean:] * self.vectors[i][:, self.frame]], 1)


def shift_scale(h: torch.Tensor, mod: Modulation | None, i: int) -> torch.Tensor:
    return h if mod is None else mod.shift_scale(h, i)


def gate(y: torch.Tensor, mod: Modulation | None, i: int) -> torch.Tensor:
    return y if mod is None else mod.gate(y, i)


def _in_dtype(norm: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """norm(x) in x's dtype whatever autocast says. CUDA autocast runs layer_norm and rms_norm in fp32, so each
    normalised activation of a bf16 stream was written (and its gradient read) as an fp32 copy, and q and k
    reached attention in fp32: a sixth more memory traffic per layer for nothing, since the kernels accumulate
    in fp32 either way. The CPU's autocast already keeps x's dtype, so CPU runs are unchanged."""
    if not torch.is_autocast_enabled(x.device.type):
        return norm(x)
    with torch.autocast(x.device.type, enabled=False):
        return norm(x)


def _rms(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """norm(x) in x's dtype, the weight cast to it (an fp32 weight with a bf16 input keeps torch off its fused
    kernel)."""
    weight = None if norm.weight is None else norm.weight.to(x.dtype)
    return _in_dtype(lambda h: F.rms_norm(h, norm.normalized_shape, weight, norm.eps), x)


class ExpertBlock(nn.Module):
    """One layer of one expert: adaLN-zero modulation, QKV with QK-norm, output projection, MLP.

    ``ada`` exists only on an expert that receives frame tokens, the only tokens that can be noisy: an
    unused module would hold parameters that never get a gradient (DDP refuses them, AdamW decays them).
    ``bias``: the linear layers' biases; ``key_norm_weight``: QK-norm's learned weight on the keys as well as
    on the queries (ModelConfig.block_bias and .key_norm_weight say why a config goes without).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, time_conditioned: bool = True, bias: bool = True,
                 key_norm_weight: bool = True):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.q_norm = nn.RMSNorm(width // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(width // heads, eps=1e-6, elementwise_affine=key_norm_weight)
        self.out = nn.Linear(width, width, bias=bias)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden, bias=bias), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, width, bias=bias))
        self.ada = nn.Linear(width, 6 * width) if time_conditioned else None

    def qkv_of(self, x: torch.Tensor, mod: Modulation | None) -> tuple[torch.Tensor, ...]:
        """x (B, n, D) -> q, k, v each (B, H, n, dh)."""
        B, n, D = x.shape
        h = shift_scale(_in_dtype(self.norm1, x), mod, 0)
        q, k, v = self.qkv(h).view(B, n, 3, self.heads, D // self.heads).unbind(2)
        return _rms(self.q_norm, q).transpose(1, 2), _rms(self.k_norm, k).transpose(1, 2), v.transpose(1, 2)

    def finish(self, x: torch.Tensor, attn: torch.Tensor, mod: Modulation | None) -> torch.Tensor:
        """Residual updates after attention: x, attn (B, n, D) -> (B, n, D)."""
        x = x + gate(self.out(attn), mod, 2)
        return x + gate(self.mlp(shift_scale(_in_dtype(self.norm2, x), mod, 3)), mod, 5)


class FinalNorm(nn.Module):
    """The expert's last adaLN norm (shift, scale) before the shared output heads."""

    def __init__(self, width: int, time_conditioned: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width) if time_conditioned else None

    def forward(self, x: torch.Tensor, mod: Modulation | None) -> torch.Tensor:
        """x (B, n, D), mod from ``self.ada`` -> (B, n, D)."""
        return shift_scale(_in_dtype(self.norm, x), mod, 0)


class MoTTrunk(nn.Module):
    """depth layers x experts. ``run`` maps segment-ordered embeddings to segment-ordered hidden states."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float, experts: dict[str, str],
                 fp32_residual: bool = False, bias: bool = True, key_norm_weight: bool = True, query_tile: int = 0):
        super().__init__()
        assert width % heads == 0, "width must be divisible by heads"
        self.experts = dict(experts)
        self.expert_names = sorted(set(experts.values()))
        self.heads = heads
        timed = {experts["frame"]}
        self.layers = nn.ModuleList(
            nn.ModuleDict({e: ExpertBlock(width, heads, mlp_ratio, e in timed, bias, key_norm_weight)
                           for e in self.expert_names})
            for _ in range(depth)
        )
        self.final = nn.ModuleDict({e: FinalNorm(width, e in timed) for e in self.expert_names})
        # the frame expert's slice first: its frames are 64-token blocks that then start at multiples of 64, so
        # that more of the mask's tiles are all allowed or all ruled out (flex attention computes 58% of a base
        # training window's 64 x 64 tiles in this order, 78% with the frames in the middle; of its 128 x 128
        # tiles 84% and 88%)
        self.routing_order = sorted(self.expert_names, key=lambda e: (e not in timed, e))
        self.width = width
        self.fp32_residual = fp32_residual  # under autocast; else the stream is in the autocast dtype
        self._routings: dict[tuple, Routing] = {}
        self._qkv_of, self._finish = ExpertBlock.qkv_of, ExpertBlock.finish
        self._run_layer = self.run_layer
        self.flex_tile = 0  # > 0: cacheless segments attend with flex attention in tiles of this size
        self.query_tile = query_tile  # > 0: cacheless segments attend in query tiles of at most this many rows

    def compile(self, scope: str = "layer", attention: str = "sdpa", flex_tile: int = 128, **options) -> None:
        """torch.compile the trunk for training. Regional, so that a graph is traced once and every layer (or
        block) runs it (parameters are inputs: a graph per shape, not per layer). scope "layer": a layer with
        all its experts (:meth:`run_layer`), so the experts' concatenations around attention and the
        elementwise work around the matmuls fuse. "blocks": each expert block's work before and after
        attention (norms, modulation, QKV, QK-norm; output projection, gates, MLP).

        attention "flex" (scope "layer" only): segments without a KV cache attend with flex attention on the
        mask's flex_tile x flex_tile tiles instead of SDPA with the boolean mask, which computes every entry
        (flex skips the tiles the mask rules out). Compiled only: eager flex attention is a slow reference, and torch has no flex
        backward on the CPU (CPU inference works)."""
        if attention not in ("sdpa", "flex"):
            raise ValueError(f"attention {attention!r}: expected 'sdpa' or 'flex'")
        if attention == "flex" and scope != "layer":
            raise ValueError("flex attention needs compile scope 'layer' (attention inside the compiled region)")
        if scope == "layer":
            self._run_layer = torch.compile(self.run_layer, **options)
            self.flex_tile = flex_tile if attention == "flex" else 0
        elif scope == "blocks":
            self._qkv_of = torch.compile(ExpertBlock.qkv_of, **options)
            self._finish = torch.compile(ExpertBlock.finish, **options)
        else:
            raise ValueError(f"compile scope {scope!r}: expected 'layer' or 'blocks'")

    def initialize(self) -> None:
        """adaLN-zero for noisy frames: their residual branches and final modulation start at zero (DiT)."""
        for layer in self.layers:
            for block in layer.values():
                for lin in (block.qkv, block.out, block.mlp[0], block.mlp[2]):
                    nn.init.xavier_uniform_(lin.weight)
                    if lin.bias is not None:
                        nn.init.zeros_(lin.bias)
                if block.ada is not None:
                    nn.init.zeros_(block.ada.weight)
                    nn.init.zeros_(block.ada.bias)
        for fin in self.final.values():
            if fin.ada is not None:
                nn.init.zeros_(fin.ada.weight)
                nn.init.zeros_(fin.ada.bias)

    def routing(self, seg: Segment, device: torch.device) -> Routing:
        key = seg.key + (device.type,)
        route = self._routings.get(key)
        if route is None:
            route = self._routings[key] = build_routing(seg, self.experts, self.routing_order, device)
        return route

    def _modulation(self, sl: ExpertSlice, ada: nn.Linear | None, k: int, noisy: torch.Tensor | None,
                    ) -> Modulation | None:
        """The slice's modulation: ``ada`` runs on the J noisy-frame times only (not per token, which would
        cost as much as the MLP); None where the slice has no noisy tokens."""
        if sl.end == sl.first_noisy:
            return None
        assert noisy is not None, "noisy tokens need their diffusion time"
        return Modulation(ada(noisy).chunk(k, dim=-1), sl.first_noisy - sl.start, sl.noisy_frame)

    def run_layers(self, route: Routing, x: torch.Tensor, noisy_cond: torch.Tensor | None, mask: Mask,
                   cache: KVCache | None, append: bool) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Every layer and the final norms. x (B, n, D) in segment order; mask (n, L + n) with the cache's L keys
        first (or, without a cache, its flex tiles or query tiles). Returns hidden states (B, n, D) in segment
        order, and the segment's per-layer keys and values (B, H, n, dh) in expert-contiguous order (empty
        unless append)."""
        x = x[:, route.perm]
        if torch.is_autocast_enabled(x.device.type) and not self.fp32_residual:
            x = x.to(torch.get_autocast_dtype(x.device.type))
        # the stream as one tensor per expert slice: slicing and concatenating it at every layer cost a copy
        # forward and a scatter into zeros backward, on every layer
        xs = [x[:, sl.start:sl.end] for sl in route.slices]
        noisy_cond = F.silu(noisy_cond) if noisy_cond is not None else None
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            xs, k, v = self._run_layer(layer, route, xs, noisy_cond, mask, past, append)
            if append:
                new_keys.append(k), new_values.append(v)
        x = torch.cat([self.final[sl.name](xe, self._modulation(sl, self.final[sl.name].ada, 2, noisy_cond))
                       for sl, xe in zip(route.slices, xs)], dim=1)
        return x[:, route.inverse], new_keys, new_values

    def run_layer(self, layer: nn.ModuleDict, route: Routing, xs: list[torch.Tensor],
                  noisy_cond: torch.Tensor | None, mask: Mask, past: tuple[torch.Tensor, torch.Tensor] | None,
                  keep_kv: bool = False) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """One layer, every expert: xs, the stream of each expert slice (B, n_e, D) in the routing's order -> xs,
        and with keep_kv the segment's keys and values (B, H, n, dh) in expert-contiguous order (else None: a
        graph output is written whether used or not, and attention in query tiles reads the keys in another
        order); past: this layer's cached keys and values (B or 1, H, L, dh). What ``compile(scope="layer")``
        compiles: one graph that every layer runs (one more where keep_kv differs)."""
        B = xs[0].shape[0]
        mods, qs, ks, vs = [], [], [], []
        for sl, x in zip(route.slices, xs):
            block = layer[sl.name]
            mod = self._modulation(sl, block.ada, 6, noisy_cond)
            q, k, v = self._qkv_of(block, x, mod)
            mods.append(mod)
            qs.append(q), ks.append(k), vs.append(v)
        q, k, v = torch.cat(qs, 2), torch.cat(ks, 2), torch.cat(vs, 2)
        k_all, v_all = k, v
        if past is not None:
            k_all = torch.cat([past[0].expand(B, -1, -1, -1), k], 2)
            v_all = torch.cat([past[1].expand(B, -1, -1, -1), v], 2)
        if isinstance(mask, BlockMask):  # bf16 inputs under autocast, whatever dtype the QK-norm left
            attn = flex_attention(q.to(v.dtype), k_all.to(v.dtype), v_all, block_mask=mask,
                                  kernel_options=_flex_tiles(mask.BLOCK_SIZE))
        elif isinstance(mask, TiledMask):
            attn = tiled_attention(q, k_all, v_all, mask)
        else:
            attn = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)  # (B, H, n, dh)
        attn = attn.transpose(1, 2).flatten(2)  # (B, n, D)
        xs = [self._finish(layer[sl.name], x, attn[:, sl.start:sl.end], mod)
              for sl, x, mod in zip(route.slices, xs, mods)]
        return (xs, k, v) if keep_kv else (xs, None, None)

    def run(self, seg: Segment, x: torch.Tensor, noisy_cond: torch.Tensor | None = None,
            cache: KVCache | None = None, append: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        """Run one segment.

        x: (B, n, D) embeddings in segment order; noisy_cond: (B, J, D) time vectors of the segment's J noisy frames; cache: keys/values of earlier
        clean tokens (seen by every query of the segment, as the mask rule says). With append=True the
        segment's keys/values are appended to a new cache that is returned.
        Returns hidden states (B, n, D) in segment order, and the extended cache (or the input cache).
        """
        route = self.routing(seg, x.device)
        assert not (append and route.has_noisy), "noisy tokens never enter the cache"
        mask = route.mask
        if cache is None and self.flex_tile:
            mask = route.flex_mask(self.flex_tile)
        elif cache is None and self.query_tile:
            mask = route.query_tiles(self.query_tile)
        if cache is not None:
            past = attention_mask(route.mask_blocks, route.noisy, cache.mask_blocks,
                                  torch.zeros_like(cache.mask_blocks, dtype=torch.bool))
            mask = torch.cat([past, mask], dim=1)
        out, new_keys, new_values = self.run_layers(route, x, noisy_cond, mask, cache, append)
        if not append:
            return out, cache
        if cache is None:
            return out, KVCache(new_keys, new_values, route.mask_blocks)
        B = x.shape[0]
        keys = [torch.cat([ck.expand(B, -1, -1, -1), nk], 2) for ck, nk in zip(cache.keys, new_keys)]
        values = [torch.cat([cv.expand(B, -1, -1, -1), nv], 2) for cv, nv in zip(cache.values, new_values)]
        return out, KVCache(keys, values, torch.cat([cache.mask_blocks, route.mask_blocks]))


def computed_tiles(block_mask: BlockMask) -> float:
    """The fraction of a block mask's tiles that flex attention's kernels compute (the partial and full ones)."""
    computed = block_mask.kv_num_blocks.sum() + block_mask.full_kv_num_blocks.sum()
    q_tiles, kv_tiles = (-(-n // t) for n, t in zip(block_mask.shape[-2:], block_mask.BLOCK_SIZE))
    return float(computed) / (q_tiles * kv_tiles)


def _flex_tiles(block_size: tuple[int, int]) -> dict[str, int]:
    """Forward kernel tiles no larger than the block mask's: inductor's default for bf16 on an H100 is 128 x 128,
    which a 64-entry block mask refuses. (Its default backward tiles need 128-entry blocks too; with 64,
    compile with mode="max-autotune-no-cudagraphs", whose candidates include smaller tiles.)"""
    t = min(block_size)
    return {"fwd_BLOCK_M": t, "fwd_BLOCK_N": t} if t < 128 else {}


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
