"""Validation metrics: next-frame and open-loop PSNR/SSIM against copying, AR token accuracy, action error."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from worldmot.reasoning import positions_in
from worldmot.model import imagination
from worldmot.model.world_model import SegmentInputs, WorldModel
from worldmot.sequence import PackedBatch, pack_windows
from worldmot.training.losses import LOSS_PARTS, WorldModelLoss, sample_noise


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (N,) of images (N, 3, H, W) in [-1, 1] (peak = the full range)."""
    mse = ((pred.clamp(-1, 1) - target.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (N,) of images (N, 3, H, W) in [-1, 1], Gaussian window, channels averaged.
    (Wang et al. 2004 constants; a 7-px window because the frames are small.)"""
    x, y = (pred.clamp(-1, 1) + 1) / 2, (target.clamp(-1, 1) + 1) / 2
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(x.shape[1], 1, window, window)
    blur = lambda z: F.conv2d(z, kernel, groups=x.shape[1])
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def validate(model: WorldModel, windows: dict, horizons: list[int], flow_steps: int = 1, seed: int = 0,
             samples: list | None = None, full: bool = True) -> dict[str, float]:
    """Metrics on a collated batch of validation windows with 1 + max(horizons) frame steps.

    Open loop: from f_0 and the instruction, imagine f_1..f_H with the true actions, compare f_k (k in
    horizons) with the truth, beside copying f_0. Tokens: teacher-forced argmax accuracy of reasoning,
    action and progress tokens on the first n_steps (the training window), and the action error after
    de-tokenising (mean |a_pred - a_true| in action units) beside a constant action's error; a_true is the
    expert's action where the dataset records it (what the AR path is taught), else the executed one. Action
    conditioning: next-frame PSNR with another window's actions (``psnr_1_wrong_actions``). Closed loop:
    :func:`closed_loop_metrics`.
    ``samples``, a list, receives (true, predicted) frames (N, len(horizons), 3, S, S) in [-1, 1] for viewing.
    Always: the training losses on these windows (:func:`held_out_losses`); ``full=False``: only those.
    """
    was_training = model.training
    model.eval()
    seq = model.cfg.sequence
    frames = model.tokenize_frames(windows["frames"].numpy())  # (B, 1+H, P, Dp)
    if not full:
        out = held_out_losses(model, _training_window(model, windows, frames)[1], seed)
        model.train(was_training)
        return out
    B, H = frames.shape[0], max(horizons)
    actions = windows["actions"][:, :H]
    gen = torch.Generator().manual_seed(seed)
    imagined, _ = imagination.rollout(model, windows["instruction"], frames[:, 0], actions, flow_steps=flow_steps, generator=gen)
    out: dict[str, float] = {}
    valid = ~windows["frame_is_pad"]
    truth = model.detokenize_frames(frames)
    for k in horizons:
        ok = valid[:, k]
        if not ok.any():
            continue
        pred = model.detokenize_frames(imagined[:, k - 1])
        out[f"psnr_{k}"] = float(psnr(pred, truth[:, k])[ok].mean())
        out[f"ssim_{k}"] = float(ssim(pred, truth[:, k])[ok].mean())
        out[f"copy_psnr_{k}"] = float(psnr(truth[:, 0], truth[:, k])[ok].mean())
        out[f"copy_ssim_{k}"] = float(ssim(truth[:, 0], truth[:, k])[ok].mean())

    short, batch = _training_window(model, windows, frames)
    out.update(held_out_losses(model, batch, seed))
    preds = token_predictions(model, batch)
    for kind, (pred, target) in preds.items():
        if len(target):
            out[f"{kind}_acc"] = float((pred == target).float().mean())
    pred, target = preds["progress"]
    if len(target):
        ids, values = model.vocab.progress_token_ids().tolist(), model.vocab.progress_values()
        value = lambda x: values[torch.as_tensor([ids.index(int(i)) for i in x])]
        out["progress_mae"] = float((value(pred) - value(target)).abs().mean())
        out["progress_mae_const"] = float((value(target) - value(target).median()).abs().mean())
    pred, target = preds["action"]
    if len(target):
        mask = batch.target_mask[:, torch.as_tensor(batch.layout.actions.reshape(-1))]
        true = taught_actions(short).reshape(B, -1)[mask]
        bins = (pred.cpu() - model.vocab.action_offset).reshape(-1, 1).expand(-1, seq.action_dim)
        dims = torch.arange(len(true)) % seq.action_dim
        decoded = model.action_tokenizer.decode(bins)[torch.arange(len(true)), dims]
        out["action_mae"] = float((decoded - true).abs().mean())
        # the reference: one constant action per dimension (the batch median), what ignoring the frames gives
        const = true.reshape(-1, seq.action_dim).median(0).values.repeat(len(true) // seq.action_dim)
        out["action_mae_const"] = float((const - true).abs().mean())
    # action conditioning: the same one-step prediction with another window's actions (a model that
    # ignores its actions scores the same; measured 33.6 vs 29.8 dB for an action-conditioned probe)
    if 1 in horizons and B > 1:
        wrong, _ = imagination.rollout(model, windows["instruction"], frames[:, 0], actions[:, :1].roll(1, 0),
                                       flow_steps=flow_steps, generator=torch.Generator().manual_seed(seed))
        ok = valid[:, 1]
        out["psnr_1_wrong_actions"] = float(psnr(model.detokenize_frames(wrong[:, 0]), truth[:, 1])[ok].mean())
    out.update(closed_loop_metrics(model, windows))
    if samples is not None:
        ks = [k for k in horizons if k <= H]
        samples.append((truth[:, ks].cpu(), torch.stack([model.detokenize_frames(imagined[:, k - 1]) for k in ks], 1).cpu()))
    model.train(was_training)
    return out


def taught_actions(windows: dict) -> torch.Tensor:
    """(B, K, C, A) the actions the AR path is taught: the expert's where the windows have them, else the executed."""
    return windows["expert_actions"] if "expert_actions" in windows else windows["actions"]


def _training_window(model: WorldModel, windows: dict, frames: torch.Tensor) -> tuple[dict, PackedBatch]:
    """The first n_steps of each validation window (the training layout), as raw windows and packed."""
    K = model.cfg.sequence.n_steps
    short = {key: (v[:, :K] if isinstance(v, torch.Tensor) and v.ndim >= 2 else v) for key, v in windows.items()}
    short["subtasks"] = [s[:K] for s in windows["subtasks"]]
    states = model.normalize_state(short["states"]).cpu()
    batch = pack_windows(short, cfg=model.cfg.sequence, vocab=model.vocab, text_tokenizer=model.text_tokenizer,
                         action_tokenizer=model.action_tokenizer, frame_tokens=frames[:, :K].cpu(), states=states)
    return short, batch


@torch.no_grad()
def state_read_r2(model: WorldModel, windows: dict) -> torch.Tensor:
    """(Ds,) how much of each state dimension's variance the model reads off a fresh frame (f_0 of each held-out
    window, no state given, as it reads a goal image): 1 - MSE / variance of the normalised state (R^2)."""
    frames = model.tokenize_frames(windows["frames"][:, 0].numpy())
    read = imagination.start(model, windows["instruction"], frames).state
    true = model.normalize_state(windows["states"][:, 0])
    return 1 - ((read - true) ** 2).mean(0) / true.var(0, unbiased=False).clamp(min=1e-6)


@torch.no_grad()
def held_out_losses(model: WorldModel, batch, seed: int = 0) -> dict[str, float]:
    """The training losses on held-out windows (no condition dropout, diffusion times and noise fixed by
    ``seed``, so every validation of a run, and every run, draws the same): {val_loss, val_ce, val_fm, val_st, val_kp}."""
    B, K = batch.frames.shape[:2]
    t, noise = sample_noise(model, B, K, torch.Generator().manual_seed(seed))
    out = WorldModelLoss(model)(batch, t=t, noise=noise)
    return {f"val_{k}": float(out[k]) for k in LOSS_PARTS}


@torch.no_grad()
def token_predictions(model: WorldModel, batch: PackedBatch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Teacher-forced argmax predictions of the AR targets, by kind: {reasoning, action, progress} ->
    (predicted ids, target ids (``batch.target_ids``)), each (n,) over the valid targets, each prediction among
    the ids its kind may take. Noisy frames are pure noise here (nothing else sees them, so they cannot change
    these predictions)."""
    layout, dev = batch.layout, model.device
    batch = batch.to(dev)
    B, K = batch.frames.shape[:2]
    t, eps = torch.ones(B, K - 1), torch.zeros(B, K - 1, *batch.frames.shape[2:])
    inp = SegmentInputs(batch.token_ids, batch.frames, batch.states, batch.state_dropped, eps.to(dev),
                        batch.frames[:, :-1], t.to(dev))
    h, _ = model.run(layout.segment(0, layout.length), inp)
    slots = {"reasoning": layout.reasoning, "action": layout.actions, "progress": layout.progress}
    out = {}
    for kind, slot in slots.items():
        pos = torch.as_tensor(np.asarray(slot).reshape(-1), device=dev)
        mask = batch.target_mask[:, pos]
        allowed = model.token_ids(kind, dev)
        pred = allowed[model.next_token_logits(h[:, pos - 1])[..., allowed].argmax(-1)]
        out[kind] = (pred[mask], batch.target_ids[:, pos][mask])
    return out


def reasoning_position_error(said: list[str], true: list[str]) -> dict[str, float]:
    """Where texts ``said`` place the named object against where texts ``true`` do (``positions_in``, the
    first position each names), over the pairs whose true text names one: {policy_reasoning_named: the
    fraction of those whose said text names one too, policy_reasoning_pos_err: mean distance (metres) over
    the pairs that both name one, policy_reasoning_pos_err_const: the same for the median true position}.
    Empty when no true text names a position."""
    pairs = [(positions_in(s), positions_in(t)) for s, t in zip(said, true)]
    pairs = [(s, t) for s, t in pairs if len(t)]
    if not pairs:
        return {}
    out = {"policy_reasoning_named": sum(len(s) > 0 for s, _ in pairs) / len(pairs)}
    named = [(s[0], t[0]) for s, t in pairs if len(s)]
    if named:
        s, t = (torch.as_tensor(np.stack(x)) for x in zip(*named))
        out["policy_reasoning_pos_err"] = float((s - t).norm(dim=-1).mean())
        out["policy_reasoning_pos_err_const"] = float((t.median(0).values - t).norm(dim=-1).mean())
    return out


@torch.no_grad()
def closed_loop_metrics(model: WorldModel, windows: dict) -> dict[str, float]:
    """What the AR policy and the planner read, decoded from f_0 alone (no teacher forcing).

    policy_action_mae: the greedy AR chunk (reasoning, then actions) against the expert's first chunk;
    teacher-forced action accuracy hides a wrong first action, since later bins mostly repeat it.
    policy_progress_mae: the expected progress the planner scores, against the true progress of f_0.
    policy_reasoning_pos_err: where the greedy reasoning says the named object is against where the
    dataset's reasoning says it is (:func:`reasoning_position_error`; grounded reasoning only).
    object_err_px: where the model places the named objects on f_0 (WorldModel.locate_objects) against the
    dataset's keypoints, in pixels (keypoint datasets only).
    Each beside the error of a constant (the batch median).
    After the true first chunk, one imagined frame f_1 (what the planner's object cost prices):
    imagined_object_err_px: the objects placed on it; ahead_object_err_px: where the model predicts them at
    the chunk's [EOA] (ModelConfig.lambda_keypoint_ahead); both beside object_err_px_still, f_0's true
    positions taken for f_1's (an arm under torque moves on; a model that ignores the action scores this).
    """
    frames = model.tokenize_frames(windows["frames"][:, 0].numpy())
    im = imagination.start(model, windows["instruction"], frames, windows["states"][:, 0].float(), horizon=1)
    progress = im.progress().cpu()
    decoded, texts = imagination.write_step(im, None, reason=True)
    true = taught_actions(windows)[:, 0].float()  # (B, C, A)
    ok = ~windows["action_is_pad"][:, 0].reshape(true.shape[0], -1).any(-1)
    out = {}
    if bool(ok.any()):
        t = true[ok]
        out["policy_action_mae"] = float((decoded.float()[ok] - t).abs().mean())
        out["policy_action_mae_const"] = float((t.reshape(-1, t.shape[-1]).median(0).values - t).abs().mean())
    target = torch.where(windows["success"][:, 0], torch.ones(()), windows["progress"][:, 0].float())
    out["policy_progress_mae"] = float((progress - target).abs().mean())
    out["policy_progress_mae_const"] = float((target.median() - target).abs().mean())
    out.update(reasoning_position_error(texts, [subtasks[0] for subtasks in windows["subtasks"]]))
    if im.objects is not None and "keypoints" in windows:
        true = windows["keypoints"][:, 0].float().reshape(im.objects.shape)
        size = model.cfg.sequence.image_size
        out["object_err_px"] = float((im.objects.cpu() - true).norm(dim=-1).mean() * size)
        out["object_err_px_const"] = float((true.median(0).values - true).norm(dim=-1).mean() * size)
        out.update(_one_step_object_errors(model, windows, ok))
    return out


def _one_step_object_errors(model: WorldModel, windows: dict, ok: torch.Tensor) -> dict[str, float]:
    """Keypoint errors of one imagined frame after the true first chunk, rows ``ok`` (B,) with a whole chunk
    and a next frame (closed_loop_metrics)."""
    if windows["frames"].shape[1] < 2:
        return {}
    ok = ok & ~windows["frame_is_pad"][:, 1]
    if not bool(ok.any()):
        return {}
    size = model.cfg.sequence.image_size
    frames = model.tokenize_frames(windows["frames"][ok, 0].numpy())
    tasks = [t for t, keep in zip(windows["instruction"], ok.tolist()) if keep]
    im = imagination.start(model, tasks, frames, windows["states"][ok, 0].float(), horizon=1)
    imagination.write_step(im, windows["actions"][ok, 0].float())
    imagination.imagine_frame(im, 1, torch.Generator().manual_seed(0))
    shape = im.objects.shape
    now, true = (windows["keypoints"][ok, k].float().reshape(shape) for k in (0, 1))
    err = lambda uv: float((uv.cpu() - true).norm(dim=-1).mean() * size)
    out = {"imagined_object_err_px": err(im.objects), "object_err_px_still": err(now)}
    if im.ahead is not None:
        out["ahead_object_err_px"] = err(im.ahead)
    return out
