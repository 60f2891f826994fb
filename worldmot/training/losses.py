"""The world model's training losses: AR cross-entropy, the frame's x0 error, the state read-out, keypoints.

Axes as in model/mot.py's legend: B batch, K frame steps in a window, Nc cameras of P patches per frame, Dp a
patch token's width, D width, Ds state dimensions, N named objects, T candidate CE target positions, V vocabulary.

Frame parametrization (WorldModel.predict_x0): the frame head predicts the change from the last clean frame, so
an untrained model (zero head) predicts "the next frame is the last frame". The flow convention is diffusers'
FlowMatchEulerDiscreteScheduler one: t=1 is noise, x_t = (1-t) x0 + t eps, v = eps - x0 = (x_t - x0) / t. The
frame loss is MSE on x0 (v-MSE weighted by t^2), which is what the skip parametrization needs to start at the
copy baseline: a naive v-prediction loss did not learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmot.devices import to_device
from worldmot.model.object_heads import cell_centre, offset_at
from worldmot.model.segment_constants import DeviceConstants
from worldmot.model.world_model import SegmentInputs, WorldModel
from worldmot.sequence import Layout, PackedBatch

# a patch whose mean squared change from the last frame exceeds this (pixels in [-1, 1]) counts as moving:
# video-codec noise is ~5e-4, the effector entering or leaving a patch ~0.3
MOTION_THRESHOLD = 0.01

LOSS_PARTS = ("loss", "ce", "fm", "st", "kp")


def sample_noise(model: WorldModel, batch_size: int, n_steps: int, generator: torch.Generator | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion times t (B, K-1) -- uniform, a fraction ``noisy_t_one`` at t=1 so that one-step generation
    from pure noise is trained directly -- and noise (B, K-1, Nc*P, Dp), drawn on the generator's device (the
    model's without one): on a GPU the host neither draws the noise (~30 ms for base's batch of 256 on a
    CPU core) nor copies it."""
    dev = generator.device if generator is not None else model.device
    t = torch.rand(batch_size, n_steps - 1, generator=generator, device=dev)
    t_one = torch.rand(batch_size, n_steps - 1, generator=generator, device=dev) < model.cfg.noisy_t_one
    eps = torch.randn(batch_size, n_steps - 1, model.tokens_per_step, model.frame_tokenizer.token_dim,
                      generator=generator, device=dev)
    return torch.where(t_one, torch.ones_like(t), t), eps


@torch.no_grad()
def own_context_frames(model: WorldModel, batch: PackedBatch, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (B, K, Nc*P, Dp), state_dropped (B, K)) of ``batch`` with the context frames f_1..f_{K-2} of
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
    h, _ = model.run(layout.segment(0, layout.length), inp)
    noisy_pos = torch.as_tensor(layout.noisy_frames.reshape(-1), device=last.device)
    pred = model.predict_x0(h[:, noisy_pos], last)  # x0 estimates of f_1..f_{K-1}
    frames[idx, 1:K - 1] = pred[:, :K - 2].to(frames.dtype)
    dropped[idx, 1:] = True
    return frames, dropped


class WorldModelLoss(nn.Module):
    """The training objective of a :class:`WorldModel` as a module: what the loop runs (and DDP wraps)."""

    def __init__(self, model: WorldModel):
        super().__init__()
        self.model = model
        self._positions = DeviceConstants()

    def positions(self, layout: Layout, device: torch.device) -> LossPositions:
        """The loss's index tensors of a layout on the device (built once per layout)."""
        return self._positions.get((id(layout), str(device)), layout,
                                   lambda: LossPositions.of(layout, self.model.cfg.sequence.action_dim, device))

    def forward(self, batch: PackedBatch, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                own_context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss on a packed batch: {loss, ce, fm, st, kp}. ce: mean over the kinds of AR targets (reasoning, action,
        progress) of each kind's weighted mean over its tokens (repeats down-weighted by cfg.ce_repeat_weight);
        fm: mean over noisy frames of the x0 error, moving patches weighted by 1 + cfg.fm_motion_weight.
        st: mean squared error of the normalised state read off each frame (WorldModel.read_state).
        kp: :meth:`keypoint_loss`.
        t (B, K-1) and noise (B, K-1, Nc*P, Dp) default to :func:`sample_noise` with ``generator``.
        own_context (B,) bool: rows whose later context frames are the model's own predictions
        (:func:`own_context_frames`); the targets stay the true frames."""
        model, cfg = self.model, self.model.cfg
        layout, dev = batch.layout, model.device
        batch = batch.to(dev)
        B, K = batch.frames.shape[:2]
        frames, state_dropped = batch.frames, batch.state_dropped
        if own_context is not None:
            frames, state_dropped = own_context_frames(model, batch, own_context.to(dev))
        x0, last = batch.frames[:, 1:], frames[:, :-1]
        if t is None or noise is None:
            t, noise = sample_noise(model, B, K, generator)
        compiling = torch.compiler.is_compiling()
        t, eps = to_device(t, dev, compiling=compiling), to_device(noise, dev, compiling=compiling)
        tt = t[..., None, None]
        xt = (1 - tt) * x0 + tt * eps
        seg = layout.segment(0, layout.length)
        inp = SegmentInputs(batch.token_ids, frames, batch.states, state_dropped, xt, last, t)
        h, _ = model.run(seg, inp)
        at = self.positions(layout, dev)
        ce = self.token_loss(h, batch, at)
        fm = self.frame_loss(h, batch, at, x0, last)
        read = model.read_state(h[:, at.eof])  # [EOF] precedes s_k
        per_state = ((read - batch.states.float()) ** 2).mean(-1)  # (B, K)
        seen = batch.frame_valid.float()
        st = (per_state * seen).sum() / seen.sum().clamp(min=1)
        kp = self.keypoint_loss(h, batch)
        loss = ce + cfg.lambda_fm * fm + cfg.lambda_state * st + cfg.lambda_keypoint * kp
        return {"loss": loss, "ce": ce, "fm": fm, "st": st, "kp": kp}

    def token_loss(self, h: torch.Tensor, batch: PackedBatch, at: LossPositions) -> torch.Tensor:
        """h (B, S, D) -> the AR cross-entropy: each kind of target (reasoning, action, progress) a weighted mean
        over its own tokens, then the kinds present averaged."""
        # every candidate target position, weighted 0 where it is not a target: boolean indexing would make
        # the shapes depend on the data (a device sync per mask on a GPU, a graph break for torch.compile)
        mask = batch.target_mask[:, at.targets]  # (B, T)
        target = batch.target_ids[:, at.targets]
        logits = self.model.next_token_logits(h[:, at.targets - 1])  # (B, T, V)
        per_token = F.cross_entropy(logits.float().flatten(0, 1), torch.where(mask, target, 0).flatten(),
                                    reduction="none").view(mask.shape)
        repeats = (at.sources >= 0) & (target == batch.target_ids[:, at.sources.clamp(min=0)])
        weight = torch.where(repeats, self.model.cfg.ce_repeat_weight, 1.0) * mask
        # reasoning has ~10x more tokens than actions and ~30x more than progress, which the planner reads
        per_kind_sum = (per_token * weight).sum(0) @ at.kinds.T  # (3,)
        per_kind_weight = weight.sum(0) @ at.kinds.T
        present = per_kind_weight > 0
        return (torch.where(present, per_kind_sum / per_kind_weight.clamp(min=1e-12), 0.0).sum()
                / present.sum().clamp(min=1))

    def frame_loss(self, h: torch.Tensor, batch: PackedBatch, at: LossPositions, x0: torch.Tensor,
                   last: torch.Tensor) -> torch.Tensor:
        """h (B, S, D), true frames x0 (B, K-1, Nc*P, Dp) and the context frames before them -> the mean x0 error
        over valid noisy frames (all cameras' patches), moving patches weighted by 1 + cfg.fm_motion_weight."""
        x0_hat = self.model.predict_x0(h[:, at.noisy], last)
        per_patch = ((x0_hat - x0) ** 2).mean(-1)  # (B, K-1, Nc*P)
        moved = ((x0 - last) ** 2).mean(-1) > MOTION_THRESHOLD
        weight = 1 + self.model.cfg.fm_motion_weight * moved.float()
        per_frame = (per_patch * weight).sum(-1) / weight.sum(-1)  # (B, K-1)
        valid = batch.frame_valid[:, 1:].float()
        return (per_frame * valid).sum() / valid.sum().clamp(min=1)

    def keypoint_loss(self, h: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Cross-entropy over each clean frame's patches of the patch holding each named object, plus 10x the
        squared error of the object's offset from that patch's centre (in patch widths), plus 10x the squared
        error of the (u, v) read off the frame's [EOF] (WorldModel.read_objects), plus ``lambda_keypoint_ahead``
        times 10x the squared errors of the placement corrected with the state (WorldModel.correct_objects) and
        of the next frame's (u, v) predicted at [EOA] from this frame's true ones (WorldModel.predict_objects);
        0 without keypoints."""
        model, cfg = self.model, self.model.cfg
        cells = batch.keypoint_cells
        valid = cells >= 0  # (B, K, N)
        if not model.reads_objects:
            return h.sum() * 0
        at = self.positions(batch.layout, h.device)
        uv = torch.where(valid[..., None], batch.keypoints.view(*cells.shape, 2), 0.0)  # (B, K, N, 2)
        loss = self.patch_keypoint_loss(h[:, at.frames], cells, uv)
        read = model.read_objects(h[:, at.eof])  # (B, K, N, 2)
        loss = loss + 10 * masked_mean(((read - uv) ** 2).sum(-1), valid)
        if cfg.lambda_keypoint_boa > 0:
            boa = model.read_objects(h[:, at.boa])
            loss = loss + cfg.lambda_keypoint_boa * 10 * masked_mean(((boa - uv) ** 2).sum(-1), valid)
        both = valid[:, 1:] & valid[:, :-1]
        if model.predicts_ahead:
            known = ~batch.state_dropped
            # corrected from the patches' own placement, as imagination has it (not the true one)
            placed = model.locate_objects(h[:, at.frames]).detach()
            now = model.correct_objects(placed, batch.states, known)  # (B, K, N, 2)
            eoa = h[:, at.eoa]  # after a_0 .. a_{K-2}
            actions = model.action_values(batch.token_ids[:, at.actions])
            ahead = model.predict_objects(eoa, uv[:, :-1], batch.states[:, :-1], known[:, :-1], actions)  # f_1 ..
            err = masked_mean(((now - uv) ** 2).sum(-1), valid) + masked_mean(((ahead - uv[:, 1:]) ** 2).sum(-1), both)
            loss = loss + cfg.lambda_keypoint_ahead * 10 * err
        return loss

    def patch_keypoint_loss(self, patches: torch.Tensor, cells: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """patches (B, K, Nc*P, D) (the first camera's are read), cells (B, K, N) (-1: unknown), uv (B, K, N, 2) -> cross-entropy of the patch
        holding each object + 10x the squared error of its offset there (in patch widths)."""
        logits, offsets = self.model.keypoint_outputs(patches)
        grid = self.model.patch_grid
        known = cells >= 0
        ce = F.cross_entropy(logits.flatten(0, 2), cells.clamp(min=0).flatten(), reduction="none").view(cells.shape)
        at = offset_at(offsets, cells.clamp(min=0))
        off = ((at - (uv * grid - cell_centre(cells, grid))) ** 2).sum(-1)  # (B, K, N)
        return masked_mean(ce, known) + 10 * masked_mean(off, known)


@dataclass
class LossPositions:
    """Where the training losses read the hidden states of a layout, as device tensors."""

    layout: Layout  # held so that the cache key (the layout's id) cannot be reused by another layout
    targets: torch.Tensor  # (T,) positions that can carry a CE target, each predicted from the one before
    kinds: torch.Tensor  # (3, T) float one-hot of each target's kind: reasoning, action, progress
    sources: torch.Tensor  # (T,) the position of the token each target could copy (-1: none)
    noisy: torch.Tensor  # ((K-1) Nc*P,) noisy frame patches
    frames: torch.Tensor  # (K, Nc*P) clean frame patches
    eof: torch.Tensor  # (K,) each frame's [EOF] (the position before its state)
    boa: torch.Tensor  # (K,) each step's [BOA] (the position before its first action bin)
    eoa: torch.Tensor  # (K-1,) the [EOA] of steps 0 .. K-2
    actions: torch.Tensor  # (K-1, C*A) action bins of steps 0 .. K-2

    @classmethod
    def of(cls, layout: Layout, action_dim: int, device: torch.device) -> LossPositions:
        targets, kinds, sources = target_positions(layout, action_dim)
        on = lambda a: torch.as_tensor(np.asarray(a), device=device)
        return cls(layout, on(targets), on(np.eye(3, dtype=np.float32)[:, kinds]), on(sources),
                   on(layout.noisy_frames.reshape(-1)), on(layout.frames), on(layout.states - 1),
                   on(layout.actions[:, 0] - 1), on(layout.eoa[:-1]), on(layout.actions[:-1]))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x where mask, 0 where nothing is (x may hold anything, NaN too, where not mask)."""
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def target_positions(layout: Layout, action_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
