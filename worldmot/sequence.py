"""The packed sequence: token layout of a window, the attention mask, and the batch builder.

One window of K frame steps becomes (docs/DESIGN.md, "The token sequence")::

    [BOS] instruction(L_i)
      [BOF] f_0 [EOF] s_0 [PRG] p_0 [BOR] r_0(L_r) [BOA] a_0(C*A) [EOA]
      f_1 (noisy, t)                                              <- diffusion target, nobody else sees it
      [BOF] f_1 [EOF] s_1 [PRG] p_1 [BOR] r_1(L_r) [BOA] a_1(C*A) [EOA]
      ...

A frame f_k holds the Nc cameras of step k one after the other, P patch tokens each (Nc*P tokens, one mask
block: the cameras of a step see each other); each patch knows its camera (``Layout.camera``). One camera
is exactly the one-camera layout.

The layout of a window depends only on the config, so it is built once (numpy index arrays) and the
model derives its routing plan from it once. Everything that varies per sample (token ids, frames,
states, which targets are padding) lives in :class:`PackedBatch`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from worldmot.config import SequenceConfig
from worldmot.devices import to_device

if TYPE_CHECKING:
    from worldmot.tokenizers.actions import ActionTokenizer

# modalities (each is mapped to an expert by ModelConfig.experts)
MODALITIES = ("text", "action", "state", "frame")
TEXT, ACTION, STATE, FRAME = range(4)
# what fills a position: a vocabulary id, the state vector, a clean frame patch, a noisy frame patch
ROLE_TOKEN, ROLE_STATE, ROLE_FRAME, ROLE_NOISY = range(4)


@dataclass(frozen=True)
class Vocab:
    """One id space: text (bytes + specials) | action bins | progress bins (success is a text special)."""

    text_size: int
    action_bins: int
    progress_bins: int
    special: dict[str, int] = field(hash=False, compare=False)

    @property
    def action_offset(self) -> int:
        return self.text_size

    @property
    def progress_offset(self) -> int:
        return self.text_size + self.action_bins

    @property
    def size(self) -> int:
        return self.progress_offset + self.progress_bins

    def progress_id(self, progress: np.ndarray, success: np.ndarray) -> np.ndarray:
        """Progress in [0, 1] -> a bin id, or the <success> id where success is true."""
        bins = np.clip((np.asarray(progress) * self.progress_bins).astype(np.int64), 0, self.progress_bins - 1)
        return np.where(np.asarray(success, bool), self.special["<success>"], self.progress_offset + bins)

    def progress_values(self) -> torch.Tensor:
        """(progress_bins + 1,) the value of each progress token, the last one being <success> (= 1)."""
        centres = (torch.arange(self.progress_bins, dtype=torch.float32) + 0.5) / self.progress_bins
        return torch.cat([centres, torch.ones(1)])

    def progress_token_ids(self) -> torch.Tensor:
        """(progress_bins + 1,) ids of the progress tokens in the order of :meth:`progress_values`."""
        ids = list(range(self.progress_offset, self.progress_offset + self.progress_bins))
        return torch.tensor(ids + [self.special["<success>"]])


def action_token_ids(action_tokenizer: ActionTokenizer, vocab: Vocab, actions: torch.Tensor) -> torch.Tensor:
    """Env actions (..., C, A) -> their bins' token ids (..., C*A) in the vocabulary."""
    return action_tokenizer.encode_chunk(actions) + vocab.action_offset


@dataclass(frozen=True, eq=False)
class Layout:
    """Static per-position arrays of one window (length S) plus slot indices into them."""

    n_steps: int
    modality: np.ndarray  # (S,) int: TEXT / ACTION / STATE / FRAME
    role: np.ndarray  # (S,) int: ROLE_*
    block: np.ndarray  # (S,) int: attention block id, non-decreasing along the sequence
    noisy: np.ndarray  # (S,) bool
    pos: np.ndarray  # (S,) int: 1-D position (a frame and its noisy copy share one)
    patch: np.ndarray  # (S,) int: patch index inside its camera's image, -1 elsewhere
    camera: np.ndarray  # (S,) int: camera index of a frame patch (0 .. Nc-1), -1 elsewhere
    step: np.ndarray  # (S,) int: frame step k of a frame/state/noisy position, -1 elsewhere
    token_template: np.ndarray  # (S,) int: fixed special ids; -1 where the id varies per sample
    instruction: np.ndarray  # (L_i,) slot indices
    frames: np.ndarray  # (K, Nc*P) clean patch positions, camera by camera
    noisy_frames: np.ndarray  # (K-1, Nc*P) noisy patch positions of f_1..f_{K-1}
    states: np.ndarray  # (K,)
    progress: np.ndarray  # (K,) position of the progress token p_k (after [PRG])
    reasoning: np.ndarray  # (K, L_r)
    actions: np.ndarray  # (K, C*A)
    bof: np.ndarray  # (K,) position of [BOF] of f_k
    eoa: np.ndarray  # (K,) position of [EOA] after a_k

    @property
    def length(self) -> int:
        return int(self.modality.shape[0])

    def segment(self, start: int, end: int) -> "Segment":
        return Segment(self, start, end)


@dataclass(frozen=True, eq=False)
class Segment:
    """Positions [start, end) of a layout: the unit the model runs at once (the whole window in training,
    a context prefix, one decoded token or one noisy frame at inference)."""

    layout: Layout
    start: int
    end: int

    def __post_init__(self) -> None:
        assert 0 <= self.start < self.end <= self.layout.length, (self.start, self.end)

    def arr(self, name: str) -> np.ndarray:
        return getattr(self.layout, name)[self.start : self.end]

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def key(self) -> tuple[int, int, int]:
        return (id(self.layout), self.start, self.end)


def make_vocab(text_tokenizer: Any, cfg: SequenceConfig) -> Vocab:
    special = {name: text_tokenizer.special(name) for name in _SPECIALS}
    return Vocab(text_tokenizer.vocab_size, cfg.action_bins, cfg.progress_bins, special)


_SPECIALS = ("<pad>", "<bos>", "<bof>", "<eof>", "<prg>", "<bor>", "<eor>", "<boa>", "<eoa>", "<state>", "<success>")


@lru_cache(maxsize=32)
def _build_layout(cfg_key: tuple, n_steps: int, special_key: tuple) -> Layout:
    (L_i, L_r, C, A, P, Nc) = cfg_key
    sp = dict(special_key)
    cols: dict[str, list] = {k: [] for k in ("modality", "role", "block", "noisy", "pos", "patch", "camera", "step",
                                             "tok")}
    cursor = {"block": 0, "pos": 0}

    def emit(n: int, modality: int, role: int, tok: int | list[int] = -1, *, block_shared=False,
             noisy=False, pos=None, step=-1, patches=False) -> np.ndarray:
        start = len(cols["modality"])
        toks = tok if isinstance(tok, list) else [tok] * n
        for i in range(n):
            cols["modality"].append(modality)
            cols["role"].append(role)
            cols["noisy"].append(noisy)
            cols["tok"].append(toks[i])
            cols["step"].append(step)
            cols["patch"].append(i % P if patches else -1)
            cols["camera"].append(i // P if patches else -1)
            cols["block"].append(cursor["block"])
            if not block_shared:
                cursor["block"] += 1
            cols["pos"].append(pos if pos is not None else cursor["pos"])
            if pos is None and not block_shared:
                cursor["pos"] += 1
        if block_shared:
            cursor["block"] += 1
            if pos is None:
                cursor["pos"] += 1
        return np.arange(start, start + n)

    slots: dict[str, list] = {k: [] for k in ("frames", "noisy", "states", "progress", "reasoning", "actions",
                                              "bof", "eoa")}
    emit(1, TEXT, ROLE_TOKEN, sp["<bos>"])
    instruction = emit(L_i, TEXT, ROLE_TOKEN)
    for k in range(n_steps):
        if k > 0:  # the noisy copy shares the 1-D position of its clean copy: [BOF] takes pos, f_k pos + 1
            slots["noisy"].append(emit(Nc * P, FRAME, ROLE_NOISY, sp["<pad>"], block_shared=True, noisy=True,
                                       pos=cursor["pos"] + 1, step=k, patches=True))
        slots["bof"].append(emit(1, TEXT, ROLE_TOKEN, sp["<bof>"])[0])
        slots["frames"].append(emit(Nc * P, FRAME, ROLE_FRAME, sp["<pad>"], block_shared=True, step=k, patches=True))
        emit(1, TEXT, ROLE_TOKEN, sp["<eof>"])
        slots["states"].append(emit(1, STATE, ROLE_STATE, sp["<state>"], step=k)[0])
        emit(1, TEXT, ROLE_TOKEN, sp["<prg>"])
        slots["progress"].append(emit(1, TEXT, ROLE_TOKEN)[0])
        emit(1, TEXT, ROLE_TOKEN, sp["<bor>"])
        slots["reasoning"].append(emit(L_r, TEXT, ROLE_TOKEN))
        emit(1, ACTION, ROLE_TOKEN, sp["<boa>"])
        slots["actions"].append(emit(C * A, ACTION, ROLE_TOKEN))
        slots["eoa"].append(emit(1, ACTION, ROLE_TOKEN, sp["<eoa>"])[0])

    arr = {k: np.asarray(v) for k, v in cols.items()}
    return Layout(
        n_steps=n_steps,
        modality=arr["modality"].astype(np.int64),
        role=arr["role"].astype(np.int64),
        block=arr["block"].astype(np.int64),
        noisy=arr["noisy"].astype(bool),
        pos=arr["pos"].astype(np.int64),
        patch=arr["patch"].astype(np.int64),
        camera=arr["camera"].astype(np.int64),
        step=arr["step"].astype(np.int64),
        token_template=arr["tok"].astype(np.int64),
        instruction=instruction,
        frames=np.stack(slots["frames"]),
        noisy_frames=np.stack(slots["noisy"]) if slots["noisy"] else np.zeros((0, Nc * P), np.int64),
        states=np.asarray(slots["states"]),
        progress=np.asarray(slots["progress"]),
        reasoning=np.stack(slots["reasoning"]),
        actions=np.stack(slots["actions"]),
        bof=np.asarray(slots["bof"]),
        eoa=np.asarray(slots["eoa"]),
    )


def build_layout(cfg: SequenceConfig, vocab: Vocab, n_steps: int | None = None, tokens_per_frame: int | None = None) -> Layout:
    """The layout of a window of ``n_steps`` frame steps (default cfg.n_steps), each frame ``cfg.cameras``
    cameras of ``tokens_per_frame`` patches (default: the patch tokenizer's). Cached: same args, same object."""
    P = tokens_per_frame if tokens_per_frame is not None else (cfg.image_size // cfg.patch_size) ** 2
    key = (cfg.instruction_len, cfg.reasoning_len, cfg.chunk, cfg.action_dim, P, cfg.cameras)
    return _build_layout(key, n_steps or cfg.n_steps, tuple(sorted(vocab.special.items())))


# ----------------------------------------------------------------------------------------------------
# Attention mask
# ----------------------------------------------------------------------------------------------------

def attention_mask(q_block: torch.Tensor, q_noisy: torch.Tensor, k_block: torch.Tensor, k_noisy: torch.Tensor,
                   q_sample: torch.Tensor | None = None, k_sample: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean (Q, K) mask, True = may attend. The rule of docs/DESIGN.md ("The token sequence"):

    allow = same_sample AND block(k) <= block(q) AND NOT (k noisy AND block(k) != block(q))

    Blocks are numbered along the sequence, so ``block(k) <= block(q)`` is "earlier or the same block":
    text/action tokens are causal (a block each), a frame is bidirectional inside itself, and a noisy
    block is seen only by itself.
    """
    qb, kb = q_block[:, None], k_block[None, :]
    allow = (kb <= qb) & ~(k_noisy[None, :] & (kb != qb))
    if q_sample is not None and k_sample is not None:
        allow &= q_sample[:, None] == k_sample[None, :]
    return allow


# ----------------------------------------------------------------------------------------------------
# Batch builder
# ----------------------------------------------------------------------------------------------------

@dataclass
class PackedBatch:
    """A batch of windows in the layout's order. B samples, S positions, K steps, Nc cameras of P patches."""

    layout: Layout
    token_ids: torch.Tensor  # (B, S) int64; template specials, instruction, progress, reasoning, action ids
    frames: torch.Tensor  # (B, K, Nc*P, Dp) clean frame tokens, camera by camera
    states: torch.Tensor  # (B, K, Ds) normalised proprioceptive state
    state_dropped: torch.Tensor  # (B, K) bool: use the learned "no state" embedding
    target_mask: torch.Tensor  # (B, S) bool: CE targets (reasoning incl. <eor>, action bins, progress)
    # (B, S) int64: what each CE target position is taught; token_ids, except that the action bins are the
    # expert's where the windows carry "expert_actions" (the inputs stay the executed actions)
    target_ids: torch.Tensor
    frame_valid: torch.Tensor  # (B, K) bool: f_k is a real frame (not padding past the episode end)
    # (B, K, N) int64: the patch holding each named object in f_k's first camera; -1: unknown
    keypoint_cells: torch.Tensor
    keypoints: torch.Tensor  # (B, K, 2N) float32: image (u, v) of each keypoint in the first camera (where cell >= 0)

    def to(self, device: torch.device | str) -> "PackedBatch":
        """The batch on device (to a GPU without blocking the host: :func:`worldmot.devices.to_device`)."""
        return PackedBatch(self.layout, *(to_device(getattr(self, n), device) for n in
                                          ("token_ids", "frames", "states", "state_dropped", "target_mask", "target_ids",
                                           "frame_valid", "keypoint_cells", "keypoints")))

    @property
    def batch_size(self) -> int:
        return int(self.token_ids.shape[0])


def pack_windows(
    windows: Sequence[dict] | dict,
    *,
    cfg: SequenceConfig,
    vocab: Vocab,
    text_tokenizer: Any,
    action_tokenizer: Any,
    frame_tokens: torch.Tensor,
    states: torch.Tensor | None = None,
    drop_instruction: np.ndarray | None = None,
    drop_reasoning: np.ndarray | None = None,
    drop_state: np.ndarray | None = None,
) -> PackedBatch:
    """Turn windows (collated dict or list of dicts, see worldmot.datasets.windows) into a PackedBatch.

    frame_tokens: (B, K, Nc*P, Dp) the windows' frames already tokenized (the caller owns the frame tokenizer,
    so a latent tokenizer can run batched on a GPU). states: (B, K, Ds) normalised, or None (zeros).
    The drop_* arrays (B,) or (B, K) select condition dropout per sample / step.
    """
    w = _as_columns(windows)
    B, K = frame_tokens.shape[:2]
    layout = build_layout(cfg, vocab, K, frame_tokens.shape[2] // cfg.cameras)
    S = layout.length
    ids = np.broadcast_to(layout.token_template, (B, S)).copy()
    target = np.zeros((B, S), bool)

    drop_i = np.zeros(B, bool) if drop_instruction is None else np.asarray(drop_instruction, bool)
    for b in range(B):
        text = "" if drop_i[b] else w["instruction"][b]
        ids[b, layout.instruction] = text_tokenizer.encode_padded(text, cfg.instruction_len)

    progress_ids = vocab.progress_id(np.asarray(w["progress"]), np.asarray(w["success"]))  # (B, K)
    ids[:, layout.progress] = progress_ids
    target[:, layout.progress] = True

    drop_r = np.zeros((B, K), bool) if drop_reasoning is None else np.broadcast_to(np.asarray(drop_reasoning, bool).reshape(B, -1), (B, K))
    subtasks = w.get("subtasks")
    for b in range(B):
        for k in range(K):
            text = "" if (subtasks is None or drop_r[b, k]) else subtasks[b][k]
            slot, n_real = _reasoning_slot(text_tokenizer, text, cfg.reasoning_len, vocab.special["<eor>"])
            ids[b, layout.reasoning[k]] = slot
            target[b, layout.reasoning[k][:n_real]] = not drop_r[b, k]

    actions = torch.as_tensor(np.asarray(w["actions"]), dtype=torch.float32)  # (B, K, C, A)
    ids[:, layout.actions.reshape(-1)] = action_token_ids(action_tokenizer, vocab, actions).numpy().reshape(B, -1)
    action_pad = np.asarray(w.get("action_is_pad", np.zeros(actions.shape[:3], bool)), bool).reshape(B, K, -1)
    action_valid = np.repeat(~action_pad, actions.shape[-1], axis=-1).reshape(B, -1)
    target[:, layout.actions.reshape(-1)] = action_valid
    target_ids = ids.copy()
    if "expert_actions" in w:
        expert = torch.as_tensor(np.asarray(w["expert_actions"]), dtype=torch.float32)
        target_ids[:, layout.actions.reshape(-1)] = action_token_ids(action_tokenizer, vocab, expert).numpy().reshape(B, -1)

    frame_valid = ~np.asarray(w.get("frame_is_pad", np.zeros((B, K), bool)), bool)
    target[:, layout.progress] &= frame_valid
    if states is None:
        states = torch.zeros(B, K, cfg.state_dim)
    drop_s = np.zeros((B, K), bool) if drop_state is None else np.broadcast_to(np.asarray(drop_state, bool).reshape(B, -1), (B, K))
    cells = np.full((B, K, cfg.keypoints), -1, np.int64)
    uv = np.zeros((B, K, 2 * cfg.keypoints), np.float32)
    if cfg.keypoints and "keypoints" in w:
        uv = np.asarray(w["keypoints"], np.float32).reshape(B, K, -1)
        cells = np.where(frame_valid[..., None], keypoint_cells(uv, cfg), -1)
    return PackedBatch(
        layout=layout,
        token_ids=torch.from_numpy(ids),
        frames=frame_tokens.float(),
        states=states.float(),
        state_dropped=torch.from_numpy(drop_s.copy()),
        target_mask=torch.from_numpy(target),
        target_ids=torch.from_numpy(target_ids),
        frame_valid=torch.from_numpy(frame_valid.copy()),
        keypoint_cells=torch.from_numpy(np.ascontiguousarray(cells)),
        keypoints=torch.from_numpy(np.ascontiguousarray(uv)),
    )


def keypoint_cells(keypoints: np.ndarray, cfg: SequenceConfig) -> np.ndarray:
    """(..., 2N) image (u, v) in [0, 1] -> (..., N) index of the patch holding each point (row-major)."""
    grid = cfg.image_size // cfg.patch_size
    uv = keypoints.reshape(*keypoints.shape[:-1], -1, 2)
    col, row = (np.clip(np.floor(uv[..., i] * grid), 0, grid - 1).astype(np.int64) for i in (0, 1))
    return row * grid + col


def _reasoning_slot(tok: Any, text: str, length: int, eor_id: int) -> tuple[np.ndarray, int]:
    """(length,) ids: text, <eor>, padding; and how many of them are targets (text + <eor>)."""
    body = tok.encode(text, max_len=length - 1)
    slot = np.full(length, tok.pad_id, np.int64)
    slot[: len(body)] = body
    slot[len(body)] = eor_id
    return slot, len(body) + 1


def _as_columns(windows: Sequence[dict] | dict) -> dict:
    if isinstance(windows, dict):
        return windows
    keys = windows[0].keys()
    return {k: [win[k] for win in windows] for k in keys}
