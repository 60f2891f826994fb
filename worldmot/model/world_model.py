"""The world model: embeddings + MoT trunk + three heads (AR tokens, frame change, state read-out), training
loss, inference.

Frame parametrization: the frame head predicts the change from the last clean frame, so an untrained
model (zero head) predicts "the next frame is the last frame": x0_hat = last + head(h). The flow
convention is diffusers' FlowMatchEulerDiscreteScheduler one: t=1 is noise, x_t = (1-t) x0 + t eps,
v = eps - x0 = (x_t - x0) / t. The frame loss is MSE on x0 (v-MSE weighted by t^2), which is what the
skip parametrization needs to start at the copy baseline (shared notes: naive v-prediction did not learn).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmot.config import ModelConfig
from worldmot.devices import to_device
from worldmot.model.ahead_head import AheadHead
from worldmot.model.cuda_graphs import GraphedRuns
from worldmot.model.mot import KVCache, MoTTrunk, position_embedding, timestep_embedding
from worldmot.sequence import (ROLE_FRAME, ROLE_NOISY, ROLE_STATE, Layout, PackedBatch, Segment, Vocab,
                               build_layout, make_vocab)
from worldmot.tokenizers.actions import ActionTokenizer
from worldmot.tokenizers.frames import make_frame_tokenizer, preprocess_frames
from worldmot.tokenizers.text import make_text_tokenizer

_Held = TypeVar("_Held", "SegmentConstants", "LossPositions")  # what WorldModel._on_device keeps per layout


def grid_position_embedding(n_patches: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding (n_patches, dim) of a square patch grid in row-major order (as in MAE/DiT):
    half the channels encode the row, half the column. Where a thing is in the frame is what an action
    depends on; a learned embedding starting near zero left the model without it for hundreds of steps."""
    side = int(round(n_patches**0.5))
    assert side * side == n_patches and dim % 4 == 0, "a square patch grid and a width divisible by 4"
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    half = dim // 2
    return torch.cat([position_embedding(rows.reshape(-1), half), position_embedding(cols.reshape(-1), half)], dim=1)


@dataclass
class SegmentInputs:
    """What fills a segment's non-token positions. J noisy frames, F clean frames, N states."""

    token_ids: torch.Tensor  # (B, n) ids (ignored at state/frame positions)
    frames: torch.Tensor | None = None  # (B, F, P, Dp) clean frame tokens, in segment order
    states: torch.Tensor | None = None  # (B, N, Ds) normalised states
    state_dropped: torch.Tensor | None = None  # (B, N) bool
    noisy: torch.Tensor | None = None  # (B, J, P, Dp) x_t
    noisy_last: torch.Tensor | None = None  # (B, J, P, Dp) the last clean frame before each noisy frame
    t: torch.Tensor | None = None  # (B, J) diffusion time of each noisy frame
    # (B, J, C*A) values in [-1, 1] of the action chunk before each noisy frame; None: read from token_ids
    # (the full sequence holds them; a cached query for a noisy frame alone must pass them)
    noisy_actions: torch.Tensor | None = None


# a patch whose mean squared change from the last frame exceeds this (pixels in [-1, 1]) counts as moving:
# video-codec noise is ~5e-4, the effector entering or leaving a patch ~0.3
MOTION_THRESHOLD = 0.01


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig, action_tokenizer: ActionTokenizer,
                 state_mean: np.ndarray | None = None, state_std: np.ndarray | None = None):
        super().__init__()
        seq = cfg.sequence
        unknown = set(cfg.experts) ^ {"text", "action", "state", "frame"}
        if unknown:
            from worldmot.errors import ConfigError
            raise ConfigError(f"model.experts must map exactly text, action, state, frame (got {sorted(cfg.experts)})")
        self.cfg = cfg
        self.text_tokenizer = make_text_tokenizer(seq.text_tokenizer)
        self.frame_tokenizer = make_frame_tokenizer(seq.frame_tokenizer, seq.image_size, seq.patch_size, seq.latent_path)
        self.action_tokenizer = action_tokenizer
        self.vocab: Vocab = make_vocab(self.text_tokenizer, seq)
        D, Dp = cfg.width, self.frame_tokenizer.token_dim
        self.tokens_per_frame = self.frame_tokenizer.tokens_per_frame
        self.register_buffer("state_mean", torch.as_tensor(np.zeros(seq.state_dim) if state_mean is None else state_mean, dtype=torch.float32))
        self.register_buffer("state_std", torch.as_tensor(np.ones(seq.state_dim) if state_std is None else state_std, dtype=torch.float32))

        self.token_embed = nn.Embedding(self.vocab.size, D)
        self.state_in = nn.Linear(seq.state_dim, D)
        self.state_null = nn.Parameter(torch.zeros(D))
        # an action bin also enters as its value: [one-hot(dim) * value in [-1, 1], one-hot(dim)] -> D. Bin
        # ids alone are unordered symbols, and the frame path did not learn to read them in 10 CPU minutes
        # (imagined frames identical under shuffled actions, measured)
        self.action_value_in = nn.Linear(2 * seq.action_dim, D, bias=False)  # zero at non-action positions
        self.frame_in = nn.Linear(2 * Dp, D)  # [patch, last clean patch] (zeros for clean frames)
        self.patch_pos = nn.Parameter(torch.zeros(self.tokens_per_frame, D))  # learned, on top of the fixed 2-D one
        self.register_buffer("patch_pos_2d", grid_position_embedding(self.tokens_per_frame, D), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        # the action chunk before a noisy frame joins its time in the adaLN conditioning (as a DiT's class
        # label, or DIAMOND's action): every patch of the frame reads the action directly. Through attention
        # alone the tiny model ignored its actions after 10 CPU minutes even on noisy-expert data (imagined
        # frames under negated actions differed by 1e-4, measured)
        self.action_cond = nn.Sequential(nn.Linear(seq.chunk * seq.action_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.trunk = MoTTrunk(D, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.experts, cfg.fp32_residual, cfg.block_bias,
                              cfg.key_norm_weight, cfg.attention_chunk)
        self._device_constants: dict[tuple, SegmentConstants | LossPositions] = {}
        self._graphs: GraphedRuns | None = None
        self.lm_head = nn.Linear(D, self.vocab.size)
        self.frame_head = nn.Linear(D, Dp)
        # the proprioceptive state read off a frame, at its [EOF] (which has seen the frame, not the state
        # token after it): imagined frames have no state, and the planner compares this read-out of an imagined
        # frame with the goal image's. Pixel distances to a goal are flat when the goal is far; a position is not
        self.state_head = nn.Linear(D, seq.state_dim)
        # R^2 of each dimension's read-out on held-out frames (set by training's validation; 1 until measured):
        # a dimension the model cannot read off a frame (the arm's velocity, say) must not steer the planner
        self.register_buffer("state_read_r2", torch.ones(seq.state_dim))
        # per frame patch and named object, a logit for the object being in it and where in the patch it is
        # (the keypoint loss, ModelConfig; :meth:`locate_objects` reads positions off them), and at each frame's
        # [EOF] (beside the state read-out) where the objects are, (u, v) - 0.5 per object, for later tokens
        # to look up. The patches place them to a pixel or two; the [EOF] read-out, on 600 CPU steps of Push,
        # was 13 px off for the block where the patches were 3 px off without the offsets
        self.keypoint_head = nn.Linear(D, 3 * seq.keypoints) if seq.keypoints else None
        self.object_head = nn.Linear(D, 2 * seq.keypoints) if seq.keypoints else None
        # the objects' placement corrected with the state, and at each step's [EOA] (which has seen the frame,
        # the state and the chunk, not the next frame) how far they will have moved in the next frame
        # (ModelConfig.lambda_keypoint_ahead), from the state and chunk as numbers (ahead_head.py says why)
        ahead = seq.keypoints and cfg.lambda_keypoint_ahead > 0
        self.ahead_head = AheadHead(D, seq.state_dim, seq.chunk * seq.action_dim, seq.keypoints,
                                    cfg.ahead_width) if ahead else None
        self.initialize()

    def initialize(self) -> None:
        # unit scale, like the fixed sin-cos positions added to it (each entry +-1): at std 0.02 the
        # token identity was a 3% ripple on the position and text/action learning crawled
        nn.init.normal_(self.token_embed.weight, std=1.0)
        nn.init.normal_(self.patch_pos, std=0.02)
        nn.init.xavier_uniform_(self.frame_in.weight), nn.init.zeros_(self.frame_in.bias)
        for lin in (self.time_mlp[0], self.time_mlp[2], self.action_cond[0], self.action_cond[2]):
            nn.init.normal_(lin.weight, std=0.02), nn.init.zeros_(lin.bias)
        self.trunk.initialize()
        with torch.no_grad():
            for name, p in self.trunk.named_parameters():
                if name.endswith(("q_norm.weight", "k_norm.weight")):
                    p.fill_(self.cfg.qk_norm_gain)
        # zero heads: uniform tokens, "the next frame is the last frame", the mean state
        for head in (self.lm_head, self.frame_head, self.state_head, self.keypoint_head, self.object_head):
            if head is not None:
                nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)

    # ------------------------------------------------------------------------------------------------
    # Shared pieces
    # ------------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.token_embed.weight.device

    def layout(self, n_steps: int | None = None) -> Layout:
        return build_layout(self.cfg.sequence, self.vocab, n_steps, self.tokens_per_frame)

    def tokenize_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) of any size -> frame tokens (..., P, Dp) on the model's device."""
        frames = torch.as_tensor(np.asarray(frames))
        lead = frames.shape[:-3]
        pix = to_device(preprocess_frames(frames.reshape(-1, *frames.shape[-3:]), self.cfg.sequence.image_size), self.device)
        tokens = self.frame_tokenizer.encode(pix)
        return tokens.reshape(*lead, *tokens.shape[1:])

    def detokenize_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frame tokens (..., P, Dp) -> pixels (..., 3, S, S) in [-1, 1]."""
        lead = tokens.shape[:-2]
        pix = self.frame_tokenizer.decode(tokens.reshape(-1, *tokens.shape[-2:]))
        return pix.reshape(*lead, *pix.shape[1:])

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (to_device(state.float(), self.device) - self.state_mean) / self.state_std

    def read_state(self, eof_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a frame's [EOF] -> the normalised state (..., Ds) read off that frame."""
        return self.state_head(eof_hidden).float()

    def state_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Read-out states (..., Ds), (..., Ds) -> (...,) Euclidean distance, each dimension weighted by its
        read-out R^2 (clamped to [0, 1]): dimensions read no better than their mean count nothing."""
        w = self.state_read_r2.clamp(0, 1).to(a.device)
        return (w * (a - b) ** 2).sum(-1).sqrt()

    def time_embed(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(timestep_embedding(t, 256))

    def embed(self, seg: Segment, inp: SegmentInputs) -> torch.Tensor:
        """Embeddings (B, n, D) of a segment: token ids, states, clean and noisy frame patches, + positions."""
        x = self.token_embed(inp.token_ids.clamp(min=0))
        B = x.shape[0]
        c = self._constants(seg, x.device)
        if c.state_idx is not None:
            s = self.state_in(inp.states)
            if inp.state_dropped is not None:
                s = torch.where(inp.state_dropped[..., None], self.state_null.expand_as(s), s)
            x = x.index_copy(1, c.state_idx, s.to(x.dtype))
        if c.frame_idx is not None:
            f = inp.frames.reshape(B, -1, inp.frames.shape[-1])
            x = x.index_copy(1, c.frame_idx, self.frame_in(torch.cat([f, torch.zeros_like(f)], -1)).to(x.dtype))
        if c.noisy_idx is not None:
            # input scaling c_in(t) = 1 - t: at t = 1 x_t is pure noise and carries nothing about x0, so the
            # network sees zeros there and one-step generation is deterministic instead of speckled
            f = (inp.noisy * (1 - inp.t)[..., None, None]).reshape(B, -1, inp.noisy.shape[-1])
            last = inp.noisy_last.reshape(B, -1, inp.noisy_last.shape[-1])
            x = x.index_copy(1, c.noisy_idx, self.frame_in(torch.cat([f, last], -1)).to(x.dtype))
        if c.action_dim is not None:
            x = x + self._action_values(inp.token_ids, c.action_dim)
        # index_select, not patch_pos[c.patch]: the indexing's backward adds the repeated patches' gradients
        # in a thread-dependent order on the CPU, so runs with the same seed drifted apart within 30 steps
        in_frame = self.patch_pos.index_select(0, c.patch) + self.patch_pos_2d[c.patch]
        return x + (c.pos + in_frame * c.in_patch)

    def _constants(self, seg: Segment, device: torch.device) -> SegmentConstants:
        """The segment's index tensors and fixed positions on the device (planning is many small forwards)."""
        return self._on_device(seg.key + (str(device),), seg.layout,
                               lambda: SegmentConstants.of(seg, self.cfg.sequence.action_dim, self.cfg.width, device))

    def _loss_positions(self, layout: Layout, device: torch.device) -> LossPositions:
        """The loss's index tensors of a layout on the device."""
        return self._on_device(("loss", id(layout), str(device)), layout,
                               lambda: LossPositions.of(layout, self.cfg.sequence.action_dim, device))

    def _on_device(self, key: tuple, layout: Layout, build: Callable[[], _Held]) -> _Held:
        """``build()`` once per key: each host-to-device copy of an index array stalled a GPU step until the GPU
        caught up. Rebuilt where the held layout is not this one (a key names a layout by its id, which a new
        layout can reuse once the old one is freed)."""
        held = self._device_constants.get(key)
        if held is None or held.layout is not layout:
            held = self._device_constants[key] = build()
        return held

    def action_values(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Action-bin token ids (any shape) -> their bin centres in [-1, 1] (normalised action units)."""
        bins = self.vocab.action_bins
        return ((token_ids - self.vocab.action_offset).clamp(0, bins - 1).float() + 0.5) / bins * 2 - 1

    def _noisy_actions(self, seg: Segment, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, J, C*A) values of the chunk a_{k-1} before each noisy frame f_k of the segment, read from its ids."""
        pos = self._constants(seg, token_ids.device).noisy_action_pos
        if pos is None:
            raise ValueError("a noisy frame's actions are not in the segment: pass SegmentInputs.noisy_actions")
        return self.action_values(token_ids[:, pos])

    def _action_values(self, token_ids: torch.Tensor, dim: torch.Tensor) -> torch.Tensor:
        """(B, n, D) value embeddings of the action bins among token_ids (B, n); dim (n,) is each position's
        action dimension (-1: not an action bin), zeros elsewhere."""
        A = self.cfg.sequence.action_dim
        value = self.action_values(token_ids)
        onehot = F.one_hot(dim.clamp(min=0), A).float() * (dim >= 0)[:, None].float()  # (n, A)
        return self.action_value_in(torch.cat([onehot * value[..., None], onehot.expand_as(value[..., None] * onehot)], -1))

    def run(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None = None, append: bool = False):
        """Hidden states (B, n, D) of a segment (and the cache extended with it when append=True). Without
        gradients on CUDA, after :meth:`use_cuda_graphs`, through a captured graph per call signature."""
        if self._graphs is not None and not torch.is_grad_enabled() and inp.token_ids.is_cuda:
            return self._graphs(seg, inp, cache, append)
        return self.eager_run(seg, inp, cache, append)

    def use_cuda_graphs(self, enabled: bool = True) -> None:
        """Replay inference forwards as CUDA graphs (cuda_graphs.py); a no-op off CUDA. Graphs captured on
        the model's device are kept (a new planner over the same model reuses them)."""
        if not enabled or self.device.type != "cuda":
            self._graphs = None
        elif self._graphs is None or self._graphs.device != self.device:
            self._graphs = GraphedRuns(self)

    def eager_run(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None = None, append: bool = False):
        """:meth:`run` op by op."""
        x = self.embed(seg, inp)
        noisy = None
        if inp.t is not None:
            actions = inp.noisy_actions if inp.noisy_actions is not None else self._noisy_actions(seg, inp.token_ids)
            noisy = self.time_embed(inp.t) + self.action_cond(actions.to(x.dtype))
        return self.trunk.run(seg, x, noisy, cache=cache, append=append)

    # ------------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------------

    def sample_noise(self, batch_size: int, n_steps: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Diffusion times t (B, K-1) -- uniform, a fraction ``noisy_t_one`` at t=1 so that one-step generation
        from pure noise is trained directly -- and noise (B, K-1, P, Dp), drawn on the generator's device (the
        model's without one): on a GPU the host neither draws the noise (~30 ms for base's batch of 256 on a
        CPU core) nor copies it."""
        dev = generator.device if generator is not None else self.device
        t = torch.rand(batch_size, n_steps - 1, generator=generator, device=dev)
        t_one = torch.rand(batch_size, n_steps - 1, generator=generator, device=dev) < self.cfg.noisy_t_one
        eps = torch.randn(batch_size, n_steps - 1, self.tokens_per_frame, self.frame_tokenizer.token_dim,
                          generator=generator, device=dev)
        return torch.where(t_one, torch.ones_like(t), t), eps

    @torch.no_grad()
    def own_context(self, batch: PackedBatch, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames (B, K, P, Dp), state_dropped (B, K)) of ``batch`` with the context frames f_1..f_{K-2} of
        ``rows`` (B,) bool replaced by the model's own one-step predictions from the true frames before
        them, and their states dropped: what imagination feeds back after its first imagined frame.

        Trained only on true context, the model met its own slightly faded frame two steps into a plan
        and left a ring where the effector had been (exposure bias; DIAMOND and GameNGen fight the same).
        """
        frames, dropped = batch.frames.clone(), batch.state_dropped.clone()
        K = frames.shape[1]
        if K < 3 or not bool(rows.any()):
            return frames, dropped
        idx = torch.nonzero(rows).squeeze(1)
        last = batch.frames[idx, :-1]
        t = torch.ones(len(idx), K - 1, device=last.device)
        inp = SegmentInputs(batch.token_ids[idx], batch.frames[idx], batch.states[idx], batch.state_dropped[idx],
                            torch.zeros_like(last), last, t)
        layout = batch.layout
        h, _ = self.run(layout.segment(0, layout.length), inp)
        noisy_pos = torch.as_tensor(layout.noisy_frames.reshape(-1), device=last.device)
        pred = last + self.frame_head(h[:, noisy_pos]).float().view_as(last)  # x0 estimates of f_1..f_{K-1}
        frames[idx, 1:K - 1] = pred[:, :K - 2].to(frames.dtype)
        dropped[idx, 1:] = True
        return frames, dropped

    def forward(self, batch: PackedBatch, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                own_context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss on a packed batch: {loss, ce, fm, st, kp}. ce: mean over the kinds of AR targets (reasoning, action,
        progress) of each kind's weighted mean over its tokens (repeats down-weighted by cfg.ce_repeat_weight);
        fm: mean over noisy frames of the x0 error, moving patches weighted by 1 + cfg.fm_motion_weight.
        st: mean squared error of the normalised state read off each frame (:meth:`read_state`).
        kp: :meth:`keypoint_loss`.
        t (B, K-1) and noise (B, K-1, P, Dp) default to :meth:`sample_noise` with ``generator``.
        own_context (B,) bool: rows whose later context frames are the model's own predictions
        (:meth:`own_context`); the targets stay the true frames."""
        layout, dev = batch.layout, self.device
        batch = batch.to(dev)
        B, K = batch.frames.shape[:2]
        frames, state_dropped = batch.frames, batch.state_dropped
        if own_context is not None:
            frames, state_dropped = self.own_context(batch, own_context.to(dev))
        x0, last = batch.frames[:, 1:], frames[:, :-1]
        if t is None or noise is None:
            t, noise = self.sample_noise(B, K, generator)
        compiling = torch.compiler.is_compiling()
        t, eps = to_device(t, dev, compiling=compiling), to_device(noise, dev, compiling=compiling)
        tt = t[..., None, None]
        xt = (1 - tt) * x0 + tt * eps
        seg = layout.segment(0, layout.length)
        inp = SegmentInputs(batch.token_ids, frames, batch.states, state_dropped, xt, last, t)
        h, _ = self.run(seg, inp)
        at = self._loss_positions(layout, dev)

        # every candidate target position, weighted 0 where it is not a target: boolean indexing would make
        # the shapes depend on the data (a device sync per mask on a GPU, a graph break for torch.compile)
        mask = batch.target_mask[:, at.targets]  # (B, T)
        target = batch.target_ids[:, at.targets]
        logits = self.lm_head(h[:, at.targets - 1])  # (B, T, V)
        per_token = F.cross_entropy(logits.float().flatten(0, 1), torch.where(mask, target, 0).flatten(),
                                    reduction="none").view(mask.shape)
        repeats = (at.sources >= 0) & (target == batch.target_ids[:, at.sources.clamp(min=0)])
        weight = torch.where(repeats, self.cfg.ce_repeat_weight, 1.0) * mask
        # each kind (reasoning, action, progress) a weighted mean over its own tokens, then the kinds present
        # averaged: reasoning has ~10x more tokens than actions and ~30x more than progress, which the planner reads
        per_kind_sum = (per_token * weight).sum(0) @ at.kinds.T  # (3,)
        per_kind_weight = weight.sum(0) @ at.kinds.T
        present = per_kind_weight > 0
        ce = (torch.where(present, per_kind_sum / per_kind_weight.clamp(min=1e-12), 0.0).sum()
              / present.sum().clamp(min=1))

        x0_hat = last + self.frame_head(h[:, at.noisy]).float().view_as(x0)
        per_patch = ((x0_hat - x0) ** 2).mean(-1)  # (B, K-1, P)
        moved = ((x0 - last) ** 2).mean(-1) > MOTION_THRESHOLD
        weight = 1 + self.cfg.fm_motion_weight * moved.float()
        per_frame = (per_patch * weight).sum(-1) / weight.sum(-1)  # (B, K-1)
        valid = batch.frame_valid[:, 1:].float()
        fm = (per_frame * valid).sum() / valid.sum().clamp(min=1)

        read = self.read_state(h[:, at.eof])  # [EOF] precedes s_k
        per_state = ((read - batch.states.float()) ** 2).mean(-1)  # (B, K)
        seen = batch.frame_valid.float()
        st = (per_state * seen).sum() / seen.sum().clamp(min=1)
        kp = self.keypoint_loss(h, batch)
        loss = ce + self.cfg.lambda_fm * fm + self.cfg.lambda_state * st + self.cfg.lambda_keypoint * kp
        return {"loss": loss, "ce": ce, "fm": fm, "st": st, "kp": kp}

    def keypoint_outputs(self, frame_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., P, D) hidden states of a frame's patches -> logits (..., N, P) of each object being in a patch
        and its offset (..., N, P, 2) from the patch centre, in patch widths (u right, v down)."""
        out = self.keypoint_head(frame_hidden).float()
        N = self.cfg.sequence.keypoints
        return out[..., :N].transpose(-1, -2), out[..., N:].unflatten(-1, (N, 2)).transpose(-2, -3)

    def keypoint_logits(self, frame_hidden: torch.Tensor) -> torch.Tensor:
        """(..., P, D) hidden states of a frame's patches -> (..., N, P) logits of where each named object is."""
        return self.keypoint_outputs(frame_hidden)[0]

    @property
    def _grid(self) -> int:
        """Patches per image side."""
        return self.cfg.sequence.image_size // self.cfg.sequence.patch_size

    def _cell_centre(self, cell: torch.Tensor) -> torch.Tensor:
        """(...,) row-major patch indices -> (..., 2) their centres (column, row) + 0.5, in patch widths."""
        return torch.stack([cell % self._grid, cell // self._grid], -1).float() + 0.5

    @staticmethod
    def _offset_at(offsets: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """offsets (..., N, P, 2), cell (..., N) -> (..., N, 2) the offsets predicted at those patches."""
        return offsets.gather(-2, cell[..., None, None].expand(*cell.shape, 1, 2)).squeeze(-2)

    def locate_objects(self, frame_hidden: torch.Tensor) -> torch.Tensor:
        """(..., P, D) hidden states of a frame's patches -> (..., N, 2) image (u, v) of the named objects: the
        centre of the likeliest patch plus the offset predicted there."""
        logits, offsets = self.keypoint_outputs(frame_hidden)
        cell = logits.argmax(-1)  # (..., N)
        return ((self._cell_centre(cell) + self._offset_at(offsets, cell).clamp(-0.5, 0.5)) / self._grid).clamp(0, 1)

    def read_objects(self, eof_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a frame's [EOF] -> (..., N, 2) image (u, v) of the named objects."""
        uv = self.object_head(eof_hidden).float() + 0.5
        return uv.reshape(*uv.shape[:-1], -1, 2)

    def correct_objects(self, placed: torch.Tensor, state: torch.Tensor, state_known: torch.Tensor) -> torch.Tensor:
        """The objects' image (u, v) placed on a frame by its patches (..., N, 2) (:meth:`locate_objects`) and
        the frame's normalised state (..., Ds) where ``state_known`` (...,) -> (..., N, 2) the placement
        corrected with the state (``ahead_head``; unchanged without it)."""
        return placed if self.ahead_head is None else self.ahead_head.place(placed, state, state_known)

    def predict_objects(self, eoa_hidden: torch.Tensor, now: torch.Tensor, state: torch.Tensor,
                        state_known: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a step's [EOA], the objects' image (u, v) on its frame (..., N, 2), the
        step's normalised state (..., Ds) where ``state_known`` (...,) and its chunk's action values
        (..., C*A) -> (..., N, 2) their (u, v) in the next frame (``ahead_head``: the change)."""
        return now + self.ahead_head.move(eoa_hidden, state, state_known, actions)

    def keypoint_loss(self, h: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Cross-entropy over each clean frame's patches of the patch holding each named object, plus 10x the
        squared error of the object's offset from that patch's centre (in patch widths), plus 10x the squared
        error of the (u, v) read off the frame's [EOF] (:meth:`read_objects`), plus ``lambda_keypoint_ahead``
        times 10x the squared errors of the placement corrected with the state (:meth:`correct_objects`) and
        of the next frame's (u, v) predicted at [EOA] from this frame's true ones (:meth:`predict_objects`);
        0 without keypoints."""
        cells = batch.keypoint_cells
        valid = cells >= 0  # (B, K, N)
        if self.keypoint_head is None:
            return h.sum() * 0
        at = self._loss_positions(batch.layout, h.device)
        uv = torch.where(valid[..., None], batch.keypoints.view(*cells.shape, 2), 0.0)  # (B, K, N, 2)
        loss = self._patch_keypoint_loss(h[:, at.frames], cells, uv)
        read = self.read_objects(h[:, at.eof])  # (B, K, N, 2)
        loss = loss + 10 * _masked_mean(((read - uv) ** 2).sum(-1), valid)
        if self.cfg.lambda_keypoint_boa > 0:
            boa = self.read_objects(h[:, at.boa])
            loss = loss + self.cfg.lambda_keypoint_boa * 10 * _masked_mean(((boa - uv) ** 2).sum(-1), valid)
        both = valid[:, 1:] & valid[:, :-1]
        if self.ahead_head is not None:
            known = ~batch.state_dropped
            # corrected from the patches' own placement, as imagination has it (not the true one)
            placed = self.locate_objects(h[:, at.frames]).detach()
            now = self.correct_objects(placed, batch.states, known)  # (B, K, N, 2)
            eoa = h[:, at.eoa]  # after a_0 .. a_{K-2}
            actions = self.action_values(batch.token_ids[:, at.actions])
            ahead = self.predict_objects(eoa, uv[:, :-1], batch.states[:, :-1], known[:, :-1], actions)  # f_1 ..
            err = _masked_mean(((now - uv) ** 2).sum(-1), valid) + _masked_mean(((ahead - uv[:, 1:]) ** 2).sum(-1), both)
            loss = loss + self.cfg.lambda_keypoint_ahead * 10 * err
        return loss

    def _patch_keypoint_loss(self, patches: torch.Tensor, cells: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """patches (B, K, P, D), cells (B, K, N) (-1: unknown), uv (B, K, N, 2) -> cross-entropy of the patch
        holding each object + 10x the squared error of its offset there (in patch widths)."""
        logits, offsets = self.keypoint_outputs(patches)
        known = cells >= 0
        ce = F.cross_entropy(logits.flatten(0, 2), cells.clamp(min=0).flatten(), reduction="none").view(cells.shape)
        at = self._offset_at(offsets, cells.clamp(min=0))
        off = ((at - (uv * self._grid - self._cell_centre(cells))) ** 2).sum(-1)  # (B, K, N)
        return _masked_mean(ce, known) + 10 * _masked_mean(off, known)

    @torch.no_grad()
    def token_predictions(self, batch: PackedBatch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Teacher-forced argmax predictions of the AR targets, by kind: {reasoning, action, progress} ->
        (predicted ids, target ids (``batch.target_ids``)), each (n,) over the valid targets. Noisy frames are pure noise here
        (nothing else sees them, so they cannot change these predictions)."""
        layout, dev = batch.layout, self.device
        batch = batch.to(dev)
        B, K = batch.frames.shape[:2]
        t, eps = torch.ones(B, K - 1), torch.zeros(B, K - 1, *batch.frames.shape[2:])
        inp = SegmentInputs(batch.token_ids, batch.frames, batch.states, batch.state_dropped, eps.to(dev),
                            batch.frames[:, :-1], t.to(dev))
        h, _ = self.run(layout.segment(0, layout.length), inp)
        vocab = self.vocab
        ranges = {"reasoning": torch.tensor(list(range(self.text_tokenizer.base_vocab_size)) + [vocab.special["<eor>"]]),
                  "action": torch.arange(vocab.action_bins) + vocab.action_offset,
                  "progress": vocab.progress_token_ids()}
        slots = {"reasoning": layout.reasoning, "action": layout.actions, "progress": layout.progress}
        out = {}
        for kind, slot in slots.items():
            pos = torch.as_tensor(np.asarray(slot).reshape(-1), device=dev)
            mask = batch.target_mask[:, pos]
            allowed = ranges[kind].to(dev)
            pred = allowed[self.lm_head(h[:, pos - 1])[..., allowed].argmax(-1)]
            out[kind] = (pred[mask], batch.target_ids[:, pos][mask])
        return out


@dataclass
class SegmentConstants:
    """What :meth:`WorldModel.embed` needs of a segment's layout, as device tensors. n = segment length."""

    layout: Layout  # held so that the cache key (the layout's id) cannot be reused by another layout
    state_idx: torch.Tensor | None  # (N,) positions of states, None: none
    frame_idx: torch.Tensor | None  # (F*P,) positions of clean frame patches
    noisy_idx: torch.Tensor | None  # (J*P,) positions of noisy frame patches
    action_dim: torch.Tensor | None  # (n,) action dimension of each action bin, -1 elsewhere; None: no bins
    patch: torch.Tensor  # (n,) patch index in its frame, 0 outside frames
    in_patch: torch.Tensor  # (n, 1) 1.0 at frame patches, 0.0 elsewhere
    pos: torch.Tensor  # (n, D) sinusoidal embedding of the sequence positions
    # (J, C*A) positions in the segment of the chunk before each of its J noisy frames; None: none, or not
    # all of them in the segment
    noisy_action_pos: torch.Tensor | None

    @classmethod
    def of(cls, seg: Segment, action_dim: int, width: int, device: torch.device) -> SegmentConstants:
        role, patch = seg.arr("role"), seg.arr("patch")
        on = lambda a: torch.as_tensor(a, device=device)
        idx = lambda r: on(np.nonzero(role == r)[0]) if (role == r).any() else None
        dims = _action_dims(seg.layout, action_dim)[seg.start:seg.end]
        steps = np.unique(seg.arr("step")[seg.arr("noisy")])  # segment order, as the trunk numbers them
        chunk_pos = seg.layout.actions[steps - 1] - seg.start  # (J, C*A)
        return cls(seg.layout, idx(ROLE_STATE), idx(ROLE_FRAME), idx(ROLE_NOISY),
                   on(dims) if (dims >= 0).any() else None, on(np.maximum(patch, 0)),
                   on((patch >= 0)[:, None].astype(np.float32)), position_embedding(on(seg.arr("pos")), width),
                   on(chunk_pos) if len(steps) and (chunk_pos >= 0).all() else None)


@dataclass
class LossPositions:
    """Where the training losses read the hidden states of a layout, as device tensors. T candidate CE targets,
    K steps, P patches per frame."""

    layout: Layout  # held so that the cache key (the layout's id) cannot be reused by another layout
    targets: torch.Tensor  # (T,) positions that can carry a CE target, each predicted from the one before
    kinds: torch.Tensor  # (3, T) float one-hot of each target's kind: reasoning, action, progress
    sources: torch.Tensor  # (T,) the position of the token each target could copy (-1: none)
    noisy: torch.Tensor  # ((K-1) P,) noisy frame patches
    frames: torch.Tensor  # (K, P) clean frame patches
    eof: torch.Tensor  # (K,) each frame's [EOF] (the position before its state)
    boa: torch.Tensor  # (K,) each step's [BOA] (the position before its first action bin)
    eoa: torch.Tensor  # (K-1,) the [EOA] of steps 0 .. K-2
    actions: torch.Tensor  # (K-1, C*A) action bins of steps 0 .. K-2

    @classmethod
    def of(cls, layout: Layout, action_dim: int, device: torch.device) -> LossPositions:
        targets, kinds, sources = _target_positions(layout, action_dim)
        on = lambda a: torch.as_tensor(np.asarray(a), device=device)
        return cls(layout, on(targets), on(np.eye(3, dtype=np.float32)[:, kinds]), on(sources),
                   on(layout.noisy_frames.reshape(-1)), on(layout.frames), on(layout.states - 1),
                   on(layout.actions[:, 0] - 1), on(layout.eoa[:-1]), on(layout.actions[:-1]))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x where mask, 0 where nothing is (x may hold anything, NaN too, where not mask)."""
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


@functools.cache  # layouts are built once per shape and compared by identity: one array per layout
def _action_dims(layout: Layout, action_dim: int) -> np.ndarray:
    """(S,) the action dimension of each action-bin position of a layout, -1 elsewhere."""
    dims = np.full(layout.length, -1, dtype=np.int64)
    for row in layout.actions:
        dims[row] = np.arange(len(row)) % action_dim
    return dims


def _target_positions(layout: Layout, action_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All positions that can carry a CE target (sorted; each predicted from the position before it), their
    kind (0 reasoning, 1 action, 2 progress) and the position of the token each could copy (-1: none):
    an action bin copies the same dimension one action earlier, p_k copies p_{k-1}."""
    actions = layout.actions.reshape(-1)  # step-major, then action, then dimension
    copy_action = np.concatenate([np.full(action_dim, -1), actions[:-action_dim]])
    copy_progress = np.concatenate([[-1], layout.progress[:-1]])
    pos = np.concatenate([layout.reasoning.reshape(-1), actions, layout.progress])
    kind = np.concatenate([np.zeros(layout.reasoning.size), np.ones(actions.size), np.full(len(layout.progress), 2)])
    source = np.concatenate([np.full(layout.reasoning.size, -1), copy_action, copy_progress])
    assert not layout.noisy[pos - 1].any(), "an AR target must not be predicted from a noisy token"
    order = np.argsort(pos)
    return pos[order], kind[order].astype(np.int64), source[order].astype(np.int64)
