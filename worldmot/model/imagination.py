"""Inference with a KV cache: encode the context once, write reasoning and actions token by token,
generate next frames as queries against the cache (the cache is not extended while denoising), append
the clean result once, read the model's predicted progress -- batched over candidates.

One imagined step k (positions from the window layout of 1 + horizon steps)::

    write_step:    p_k [BOR] r_k [BOA] a_k [EOA]        appended (AR-decoded or given)
    imagine_frame: f_{k+1} noisy                          queries only, n flow steps
                   [BOF] f_{k+1} [EOF] s_null [PRG]       appended; [EOF]'s output = state read off f_{k+1},
                                                    [PRG]'s output = progress of f_{k+1}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from worldmot.errors import WorldmotError
from worldmot.model.mot import KVCache
from worldmot.model.world_model import SegmentInputs, WorldModel
from worldmot.sequence import Layout


@dataclass
class Imagination:
    """B rollouts in imagination. ``caches[0]`` is conditioned on the instruction; ``caches[1]`` (only with
    classifier-free guidance) has the instruction dropped."""

    model: WorldModel
    layout: Layout
    caches: list[KVCache]
    step: int  # frame step k whose frame is the newest in the cache
    last_frame: torch.Tensor  # (B, Nc*P, Dp) tokens of f_k (its Nc cameras, model/mot.py's legend)
    last_hidden: torch.Tensor  # (B, D) output of the newest position (predicts the next token)
    cfg_scale: float = 1.0
    frames: list[torch.Tensor] = field(default_factory=list)  # imagined frames f_1.. (B, Nc*P, Dp) each
    actions: torch.Tensor | None = None  # (B, C*A) bin-centre values of the newest written chunk a_k
    state: torch.Tensor | None = None  # (B, Ds) normalised state read off the newest frame (WorldModel.read_state)
    # (B, N, 2) named objects' image (u, v) on it (WorldModel.locate_objects, then correct_objects)
    objects: torch.Tensor | None = None
    # (B, N, 2) where the model predicts them in the next frame: ``objects`` plus the change it predicts at the
    # newest chunk's [EOA] (models trained with ModelConfig.lambda_keypoint_ahead; None before a chunk is written)
    ahead: torch.Tensor | None = None
    # (B, Ds) the normalised state given with the newest frame (None: not given, or the frame is imagined)
    given_state: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.last_frame.shape[0])

    def expand(self, n: int) -> "Imagination":
        """Each of the B rollouts repeated n times (candidates), B*n rollouts sharing the context."""
        rep = lambda x: x.repeat_interleave(n, 0)
        return Imagination(self.model, self.layout, [c.repeat_interleave(n) for c in self.caches], self.step,
                           rep(self.last_frame), rep(self.last_hidden), self.cfg_scale, [rep(f) for f in self.frames],
                           None if self.actions is None else rep(self.actions),
                           None if self.state is None else rep(self.state),
                           None if self.objects is None else rep(self.objects),
                           None if self.ahead is None else rep(self.ahead),
                           None if self.given_state is None else rep(self.given_state))

    def _progress_probs(self) -> torch.Tensor:
        """(B, progress_bins + 1) the next token's distribution over the progress tokens, <success> last."""
        ids = self.model.token_ids("progress", self.last_hidden.device)
        return self.model.next_token_logits(self.last_hidden)[:, ids].float().softmax(-1)

    def progress(self) -> torch.Tensor:
        """(B,) expected progress in [0, 1] of the newest frame (valid right after start / imagine_frame)."""
        probs = self._progress_probs()
        return probs @ self.model.vocab.progress_values().to(probs.device)

    def success_probability(self) -> torch.Tensor:
        """(B,) the model's probability that the newest frame shows the task done (its <success> token)."""
        return self._progress_probs()[:, -1]


def _ids(layout: Layout, start: int, end: int, B: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(layout.token_template[start:end], device=device).expand(B, -1).clone()


def _append(im: Imagination, start: int, end: int, inputs: list[SegmentInputs]) -> torch.Tensor:
    """Append positions [start, end) to every cache; keep the newest output for the next prediction.
    Returns the hidden states (B, end - start, D) of the instructed cache."""
    seg = im.layout.segment(start, end)
    hidden = None
    for i, (cache, inp) in enumerate(zip(im.caches, inputs)):
        h, im.caches[i] = im.model.run(seg, inp, cache=cache, append=True)
        hidden = h if i == 0 else hidden
    im.last_hidden = hidden[:, -1]
    return hidden


@torch.no_grad()
def start(model: WorldModel, instructions: Sequence[str], frame_tokens: torch.Tensor,
          states: torch.Tensor | None = None, horizon: int = 1, cfg_scale: float = 1.0) -> Imagination:
    """Encode the context [BOS] instruction [BOF] f_0 [EOF] s_0 [PRG] for B rollouts.

    frame_tokens: (B, Nc*P, Dp) (WorldModel.tokenize_frames); states: (B, Ds) raw proprioceptive states or None
    (the "no state" embedding).
    horizon: how many frames will be imagined (the layout holds 1 + horizon steps).
    """
    seq, dev = model.cfg.sequence, model.device
    layout = model.layout(1 + horizon)
    B = frame_tokens.shape[0]
    end = int(layout.progress[0])
    contexts = [list(instructions)] + ([[""] * B] if cfg_scale != 1.0 else [])
    if states is None:
        st, dropped = torch.zeros(B, 1, seq.state_dim, device=dev), torch.ones(B, 1, dtype=torch.bool, device=dev)
    else:
        st, dropped = model.normalize_state(states)[:, None], torch.zeros(B, 1, dtype=torch.bool, device=dev)
    caches, hidden = [], None
    for texts in contexts:
        ids = _ids(layout, 0, end, B, dev)
        instr = np.stack([model.text_tokenizer.encode_padded(t, seq.instruction_len) for t in texts])
        ids[:, torch.as_tensor(layout.instruction)] = torch.as_tensor(instr, device=dev)
        inp = SegmentInputs(ids, frame_tokens.to(dev)[:, None], st, dropped)
        h, cache = model.run(layout.segment(0, end), inp, append=True)
        caches.append(cache)
        hidden = h if hidden is None else hidden
    eof = hidden[:, int(layout.states[0]) - 1]
    patches = hidden[:, torch.as_tensor(layout.frames[0], device=hidden.device)]
    objects = None
    if model.reads_objects:
        objects = model.correct_objects(model.locate_objects(patches), st[:, 0], ~dropped[:, 0])
    return Imagination(model, layout, caches, 0, frame_tokens.to(dev), hidden[:, -1], cfg_scale,
                       state=model.read_state(eof), objects=objects,
                       given_state=None if states is None else st[:, 0])


def _choose(logits: torch.Tensor, allowed: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one id per row among ``allowed`` ids: argmax (temperature 0) or a sample."""
    sub = logits[:, allowed].float()
    if temperature <= 0:
        return allowed[sub.argmax(-1)]
    probs = (sub / temperature).softmax(-1)
    return allowed[torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)]


@torch.no_grad()
def write_step(im: Imagination, actions: torch.Tensor | None = None, reason: bool = False,
               temperature: float = 0.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[str]]:
    """Append p_k [BOR] r_k [BOA] a_k [EOA] for step k.

    actions: (B, C, A) env actions to write (teacher-forced, e.g. planner candidates), or None to decode
    them autoregressively. reason: decode reasoning text before the actions (else an empty reasoning).
    Returns (actions (B, C, A) as written, reasoning texts).
    """
    model, lay, k, B = im.model, im.layout, im.step, im.batch_size
    dev, vocab, tok = model.device, model.vocab, model.text_tokenizer
    progress_id = _choose(model.next_token_logits(im.last_hidden), model.token_ids("progress", dev), 0.0, None)
    slot = lay.reasoning[k]
    if actions is not None and not reason:  # everything known: one segment
        ids = _ids(lay, int(lay.progress[k]), int(lay.eoa[k]) + 1, B, dev)
        base = int(lay.progress[k])
        ids[:, 0] = progress_id
        ids[:, slot - base] = tok.pad_id
        ids[:, slot[0] - base] = vocab.special["<eor>"]
        bins = model.action_token_ids(actions)
        ids[:, lay.actions[k] - base] = bins
        _append(im, base, int(lay.eoa[k]) + 1, [SegmentInputs(ids)] * len(im.caches))
        im.actions = model.action_values(bins)
        _predict_objects(im)
        return actions, [""] * B

    # token by token: p_k [BOR] -> reasoning -> [BOA] -> action bins -> [EOA]
    ids = _ids(lay, int(lay.progress[k]), int(lay.progress[k]) + 2, B, dev)
    ids[:, 0] = progress_id
    _append(im, int(lay.progress[k]), int(lay.progress[k]) + 2, [SegmentInputs(ids)] * len(im.caches))
    eor, pad = vocab.special["<eor>"], tok.pad_id
    text_ids = model.token_ids("reasoning", dev)
    written = torch.full((B, len(slot)), pad, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    for i, pos in enumerate(slot):
        if reason and i < len(slot) - 1:
            nxt = _choose(model.next_token_logits(im.last_hidden), text_ids, temperature, generator)
        else:
            nxt = torch.full((B,), eor, device=dev)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        written[:, i] = nxt
        done |= nxt == eor
        _append(im, int(pos), int(pos) + 1, [SegmentInputs(nxt[:, None])] * len(im.caches))
        if bool(done.all()):  # the rest of the slot is padding, then [BOA]: one segment
            rest = _ids(lay, int(pos) + 1, int(slot[-1]) + 2, B, dev)
            rest[:, :-1] = pad
            _append(im, int(pos) + 1, int(slot[-1]) + 2, [SegmentInputs(rest)] * len(im.caches))
            break
    else:
        _append(im, int(slot[-1]) + 1, int(slot[-1]) + 2, [SegmentInputs(_ids(lay, int(slot[-1]) + 1, int(slot[-1]) + 2, B, dev))] * len(im.caches))
    decoded = _write_actions(im, actions, temperature, generator)
    texts = [tok.decode(row.tolist()) for row in written] if reason else [""] * B
    return decoded, texts


def _predict_objects(im: Imagination) -> None:
    """After [EOA] (the newest position): where the model predicts the objects in the next frame, from where
    it places them on the newest frame, its given state (if any) and the chunk."""
    if im.model.predicts_ahead and im.objects is not None:
        known = torch.full((im.batch_size,), im.given_state is not None, device=im.last_hidden.device)
        state = im.given_state if im.given_state is not None else torch.zeros_like(im.state)
        im.ahead = im.model.predict_objects(im.last_hidden, im.objects, state, known, im.actions)


def _write_actions(im: Imagination, actions: torch.Tensor | None, temperature: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Append a_k [EOA] after [BOA], token by token (given or decoded); returns the actions (B, C, A)."""
    model, lay, k, B = im.model, im.layout, im.step, im.batch_size
    dev, vocab = model.device, model.vocab
    action_ids = model.token_ids("action", dev)
    forced = None if actions is None else model.action_token_ids(actions)
    chosen = []
    for i, pos in enumerate(lay.actions[k]):
        nxt = forced[:, i] if forced is not None else _choose(model.next_token_logits(im.last_hidden), action_ids,
                                                              temperature, generator)
        chosen.append(nxt)
        _append(im, int(pos), int(pos) + 1, [SegmentInputs(nxt[:, None])] * len(im.caches))
    eoa = int(lay.eoa[k])
    _append(im, eoa, eoa + 1, [SegmentInputs(_ids(lay, eoa, eoa + 1, B, dev))] * len(im.caches))
    im.actions = model.action_values(torch.stack(chosen, 1))
    _predict_objects(im)
    bins = torch.stack(chosen, 1) - vocab.action_offset
    C, A = model.cfg.sequence.chunk, model.cfg.sequence.action_dim
    return model.action_tokenizer.decode(bins.cpu().reshape(B, C, A)) if actions is None else actions


@torch.no_grad()
def imagine_frame(im: Imagination, flow_steps: int = 1, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """Generate f_{k+1} (B, Nc*P, Dp), every camera at once, against the cache, then append it (clean) and read
    its state and progress."""
    model, lay, k, B = im.model, im.layout, im.step, im.batch_size
    if k + 1 >= lay.n_steps:
        raise ValueError(f"imagination horizon exhausted: the layout holds {lay.n_steps - 1} imagined frames")
    if not 1 <= flow_steps <= 50:
        raise WorldmotError(f"flow_steps={flow_steps}: expected 1 to 50")
    if im.actions is None:
        raise ValueError("imagine_frame: write the step's actions first (write_step)")
    dev = model.device
    noisy_pos = lay.noisy_frames[k]
    seg = lay.segment(int(noisy_pos[0]), int(noisy_pos[-1]) + 1)
    last = im.last_frame[:, None]
    x = noise.to(dev) if noise is not None else torch.randn(last.shape, generator=generator, device="cpu").to(dev)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    # evenly spaced sigmas 1 .. 1/n: the last Euler step lands on the x0 estimate, so no evaluation is
    # spent at t ~ 0 (the default schedule ends at sigma 1e-3, a time the model rarely trains on)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, flow_steps + 1)[:-1].tolist(), device=dev)
    ids = _ids(lay, seg.start, seg.end, B, dev)
    for i, timestep in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i].to(dev)
        t = sigma.expand(B, 1)
        x0 = []
        for cache in im.caches:
            h, _ = model.run(seg, SegmentInputs(ids, noisy=x, noisy_last=last, t=t, noisy_actions=im.actions[:, None]),
                             cache=cache)
            x0.append(model.predict_x0(h, last))
        x0_hat = x0[0] if len(x0) == 1 else x0[1] + im.cfg_scale * (x0[0] - x0[1])
        velocity = (x - x0_hat) / sigma.clamp(min=1e-6)
        x = scheduler.step(velocity, timestep, x).prev_sample
    frame = x[:, 0]
    start, end = int(lay.bof[k + 1]), int(lay.progress[k + 1])
    st = torch.zeros(B, 1, model.cfg.sequence.state_dim, device=dev)
    inp = SegmentInputs(_ids(lay, start, end, B, dev), frame[:, None], st, torch.ones(B, 1, dtype=torch.bool, device=dev))
    hidden = _append(im, start, end, [inp] * len(im.caches))
    eof = hidden[:, int(lay.states[k + 1]) - 1 - start]
    im.state = model.read_state(eof)
    patches = hidden[:, torch.as_tensor(lay.frames[k + 1] - start, device=hidden.device)]
    im.objects = None
    if model.reads_objects:
        unknown = torch.zeros(B, dtype=torch.bool, device=dev)  # an imagined frame has no state
        im.objects = model.correct_objects(model.locate_objects(patches), st[:, 0], unknown)
    im.step, im.last_frame, im.actions, im.given_state = k + 1, frame, None, None
    im.frames.append(frame)
    return frame


@torch.no_grad()
def rollout(model: WorldModel, instructions: Sequence[str], frame_tokens: torch.Tensor, actions: torch.Tensor,
            states: torch.Tensor | None = None, flow_steps: int = 1, cfg_scale: float = 1.0,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagine H frames for B action sequences: actions (B, H, C, A) -> (frames (B, H, Nc*P, Dp), progress (B, H+1)).

    Beyond the training window (n_steps - 1 imagined frames) the context restarts from the newest imagined
    frame: positions past the window were never trained, and a model conditioned on them drifts.
    """
    H, span = actions.shape[1], max(1, model.cfg.sequence.n_steps - 1)
    frames, progress, last = [], [], frame_tokens
    for s0 in range(0, H, span):
        n = min(span, H - s0)
        im = start(model, instructions, last, states if s0 == 0 else None, horizon=n, cfg_scale=cfg_scale)
        if s0 == 0:
            progress.append(im.progress())
        for h in range(s0, s0 + n):
            write_step(im, actions[:, h])
            frames.append(imagine_frame(im, flow_steps, generator))
            progress.append(im.progress())
        last = frames[-1]
    return torch.stack(frames, 1), torch.stack(progress, 1)
