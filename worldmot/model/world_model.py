"""The world model: embeddings, the MoT trunk (model/mot.py) and the heads that read its hidden states.

Axes as in model/mot.py's legend: B batch, n segment length, D width, K frame steps, J noisy and F clean frames
of a segment, Ns states of a segment, Nc cameras of P patches per frame, Dp a patch token's width, Ds state
dimensions, C*A a chunk's action values, N named objects, V vocabulary.

What the rest of the package calls: :meth:`WorldModel.run` (hidden states of a segment, with a KV cache),
:meth:`~WorldModel.next_token_logits`, :meth:`~WorldModel.predict_x0` (the frame path's estimate of a clean
frame), :meth:`~WorldModel.read_state` and the object read-outs (:meth:`~WorldModel.locate_objects` ...).
Training's losses live in worldmot/training/losses.py, imagination (KV-cached inference) in imagination.py,
CUDA graphs of inference forwards in cuda_graphs.py (installed from outside as ``inference_runner``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmot.config import ModelConfig
from worldmot.devices import to_device
from worldmot.errors import WorldmotError
from worldmot.model.mot import KVCache, MoTTrunk, position_embedding, timestep_embedding
from worldmot.model.object_heads import AheadHead, KeypointHead, ObjectReadout
from worldmot.model.segment_constants import DeviceConstants, SegmentConstants
from worldmot.sequence import Layout, Segment, Vocab, action_token_ids, build_layout, make_vocab
from worldmot.tokenizers.actions import ActionTokenizer
from worldmot.tokenizers.frames import make_frame_tokenizer, preprocess_frames
from worldmot.tokenizers.text import make_text_tokenizer

# runs a segment in place of the eager forward (cuda_graphs.py): (seg, inputs, cache, append) -> (hidden, cache)
InferenceRunner = Callable[["Segment", "SegmentInputs", "KVCache | None", bool], tuple]


def grid_position_embedding(n_patches: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos embedding (P, D) of a square patch grid in row-major order (as in MAE/DiT):
    half the channels encode the row, half the column. Where a thing is in the frame is what an action
    depends on; a learned embedding starting near zero left the model without it for hundreds of steps."""
    side = int(round(n_patches**0.5))
    assert side * side == n_patches and dim % 4 == 0, "a square patch grid and a width divisible by 4"
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    half = dim // 2
    return torch.cat([position_embedding(rows.reshape(-1), half), position_embedding(cols.reshape(-1), half)], dim=1)


@dataclass
class SegmentInputs:
    """What fills a segment's non-token positions."""

    token_ids: torch.Tensor  # (B, n) ids (ignored at state/frame positions)
    frames: torch.Tensor | None = None  # (B, F, Nc*P, Dp) clean frame tokens, in segment order
    states: torch.Tensor | None = None  # (B, Ns, Ds) normalised states
    state_dropped: torch.Tensor | None = None  # (B, Ns) bool
    noisy: torch.Tensor | None = None  # (B, J, Nc*P, Dp) x_t
    noisy_last: torch.Tensor | None = None  # (B, J, Nc*P, Dp) the last clean frame before each noisy frame
    t: torch.Tensor | None = None  # (B, J) diffusion time of each noisy frame
    # (B, J, C*A) values in [-1, 1] of the action chunk before each noisy frame; None: read from token_ids
    # (the full sequence holds them; a cached query for a noisy frame alone must pass them)
    noisy_actions: torch.Tensor | None = None


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
        self.tokens_per_frame = self.frame_tokenizer.tokens_per_frame  # P, of one camera's image
        self.tokens_per_step = seq.cameras * self.tokens_per_frame  # Nc*P, a frame step's cameras
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
        # which camera a patch shows, added to its position in the image (several cameras only: one camera has
        # the one-camera model's parameters)
        self.camera_embed = nn.Parameter(torch.zeros(seq.cameras, D)) if seq.cameras > 1 else None
        self.time_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        # the action chunk before a noisy frame joins its time in the adaLN conditioning (as a DiT's class
        # label, or DIAMOND's action): every patch of the frame reads the action directly. Through attention
        # alone the tiny model ignored its actions after 10 CPU minutes even on noisy-expert data (imagined
        # frames under negated actions differed by 1e-4, measured)
        self.action_cond = nn.Sequential(nn.Linear(seq.chunk * seq.action_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.trunk = MoTTrunk(D, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.experts, cfg.fp32_residual, cfg.block_bias,
                              cfg.key_norm_weight, cfg.attention_query_tile)
        self._segment_constants = DeviceConstants()
        self.inference_runner: InferenceRunner | None = None  # set by cuda_graphs.use_cuda_graphs
        self.lm_head = nn.Linear(D, self.vocab.size)
        self.frame_head = nn.Linear(D, Dp)
        # the proprioceptive state read off a frame, at its [EOF] (which has seen the frame, not the state
        # token after it): imagined frames have no state, and the planner compares this read-out of an imagined
        # frame with the goal image's. Pixel distances to a goal are flat when the goal is far; a position is not
        self.state_head = nn.Linear(D, seq.state_dim)
        # R^2 of each dimension's read-out on held-out frames (set by training's validation; 1 until measured):
        # a dimension the model cannot read off a frame (the arm's velocity, say) must not steer the planner
        self.register_buffer("state_read_r2", torch.ones(seq.state_dim))
        # where the named objects are (object_heads.py): per frame patch, at each frame's [EOF], and (with
        # ModelConfig.lambda_keypoint_ahead) corrected with the state and predicted at each step's [EOA]
        self.keypoint_head = KeypointHead(D, seq.keypoints, self.patch_grid) if seq.keypoints else None
        self.object_head = ObjectReadout(D, seq.keypoints) if seq.keypoints else None
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
        if self.camera_embed is not None:  # last: the other parameters draw what a one-camera model draws
            nn.init.normal_(self.camera_embed, std=1.0)  # unit scale, like the positions beside it

    # ------------------------------------------------------------------------------------------------
    # Inputs: frames, states, actions, token ids
    # ------------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.token_embed.weight.device

    @property
    def patch_grid(self) -> int:
        """Patches per image side."""
        return self.cfg.sequence.image_size // self.cfg.sequence.patch_size

    def layout(self, n_steps: int | None = None) -> Layout:
        return build_layout(self.cfg.sequence, self.vocab, n_steps, self.tokens_per_frame)

    @property
    def cameras(self) -> int:
        """Nc, the cameras of a frame step."""
        return self.cfg.sequence.cameras

    def tokenize_frames(self, frames: np.ndarray | torch.Tensor | Sequence) -> torch.Tensor:
        """uint8 frames of a step -> frame tokens (..., Nc*P, Dp) on the model's device, camera by camera.

        One camera: frames (..., h, w, 3) of any size. Several: a list of Nc arrays (..., h_c, w_c, 3), one per
        camera (their sizes may differ), or one array (B, ..., Nc, h, w, 3) with at least one leading axis. Each is fitted to image_size by
        ``sequence.resize`` (:func:`~worldmot.tokenizers.frames.fit_frames`)."""
        views = self._camera_views(frames)
        tokens = torch.cat([self._tokenize_camera(v) for v in views], -2) if len(views) > 1 else self._tokenize_camera(views[0])
        return tokens

    def _camera_views(self, frames) -> list:
        """The step's frames as a list of Nc arrays (..., h, w, 3), one per camera."""
        Nc = self.cameras
        if isinstance(frames, (list, tuple)):
            views = list(frames)
        elif Nc == 1:
            views = [frames]
        else:
            views = list(torch.as_tensor(np.asarray(frames)).movedim(-4, 0)) if np.ndim(frames) >= 5 else []
        if len(views) != Nc:
            shape = [np.shape(v) for v in views] if isinstance(frames, (list, tuple)) else np.shape(frames)
            raise WorldmotError(f"frames {shape}: expected {Nc} camera(s) (a list of arrays (..., h, w, 3), or one "
                                f"array (..., {Nc}, h, w, 3))")
        return views

    def _tokenize_camera(self, frames) -> torch.Tensor:
        """uint8 frames (..., h, w, 3) of one camera -> its tokens (..., P, Dp) on the model's device."""
        frames = torch.as_tensor(np.asarray(frames))
        lead, seq = frames.shape[:-3], self.cfg.sequence
        pix = to_device(preprocess_frames(frames.reshape(-1, *frames.shape[-3:]), seq.image_size, seq.resize), self.device)
        tokens = self.frame_tokenizer.encode(pix)
        return tokens.reshape(*lead, *tokens.shape[1:])

    def detokenize_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frame tokens (..., Nc*P, Dp) -> pixels (..., 3, S, Nc*S) in [-1, 1] (S = image_size): the cameras side
        by side, left to right (one camera: (..., 3, S, S))."""
        lead, Nc = tokens.shape[:-2], self.cameras
        pix = self.frame_tokenizer.decode(tokens.reshape(-1, *tokens.shape[-2:]).unflatten(1, (Nc, -1)).flatten(0, 1))
        S = pix.shape[-1]
        return pix.unflatten(0, (-1, Nc)).permute(0, 2, 3, 1, 4).reshape(*lead, 3, pix.shape[-2], Nc * S)

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return (to_device(state.float(), self.device) - self.state_mean) / self.state_std

    def action_token_ids(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions (B, C, A) -> their bin token ids (B, C*A) on the model's device."""
        return action_token_ids(self.action_tokenizer, self.vocab, actions.float().cpu()).to(self.device)

    def action_values(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Action-bin token ids (any shape) -> their bin centres in [-1, 1] (normalised action units)."""
        bins = self.vocab.action_bins
        return ((token_ids - self.vocab.action_offset).clamp(0, bins - 1).float() + 0.5) / bins * 2 - 1

    def token_ids(self, kind: str, device: torch.device | str | None = None) -> torch.Tensor:
        """The ids an AR target of ``kind`` may take: "reasoning" (text, then <eor>), "action" (the bins),
        "progress" (in the order of Vocab.progress_values)."""
        vocab = self.vocab
        if kind == "reasoning":
            ids = torch.tensor(list(range(self.text_tokenizer.base_vocab_size)) + [vocab.special["<eor>"]])
        elif kind == "action":
            ids = torch.arange(vocab.action_bins) + vocab.action_offset
        elif kind == "progress":
            ids = vocab.progress_token_ids()
        else:
            raise ValueError(f"token kind {kind!r}: expected reasoning, action or progress")
        return ids.to(device or "cpu")

    # ------------------------------------------------------------------------------------------------
    # Embedding and the trunk
    # ------------------------------------------------------------------------------------------------

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
            x = x + self._action_embedding(inp.token_ids, c.action_dim)
        # index_select, not patch_pos[c.patch]: the indexing's backward adds the repeated patches' gradients
        # in a thread-dependent order on the CPU, so runs with the same seed drifted apart within 30 steps
        in_frame = self.patch_pos.index_select(0, c.patch) + self.patch_pos_2d[c.patch]
        if self.camera_embed is not None:
            in_frame = in_frame + self.camera_embed.index_select(0, c.camera)
        return x + (c.pos + in_frame * c.in_patch)

    def _constants(self, seg: Segment, device: torch.device) -> SegmentConstants:
        """The segment's index tensors and fixed positions on the device (planning is many small forwards)."""
        return self._segment_constants.get(
            seg.key + (str(device),), seg.layout,
            lambda: SegmentConstants.of(seg, self.cfg.sequence.action_dim, self.cfg.width, device))

    def _noisy_actions(self, seg: Segment, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, J, C*A) values of the chunk a_{k-1} before each noisy frame f_k of the segment, read from its ids."""
        pos = self._constants(seg, token_ids.device).noisy_action_pos
        if pos is None:
            raise ValueError("a noisy frame's actions are not in the segment: pass SegmentInputs.noisy_actions")
        return self.action_values(token_ids[:, pos])

    def _action_embedding(self, token_ids: torch.Tensor, dim: torch.Tensor) -> torch.Tensor:
        """(B, n, D) value embeddings of the action bins among token_ids (B, n); dim (n,) is each position's
        action dimension (-1: not an action bin), zeros elsewhere."""
        A = self.cfg.sequence.action_dim
        value = self.action_values(token_ids)
        onehot = F.one_hot(dim.clamp(min=0), A).float() * (dim >= 0)[:, None].float()  # (n, A)
        return self.action_value_in(torch.cat([onehot * value[..., None], onehot.expand_as(value[..., None] * onehot)], -1))

    def run(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None = None, append: bool = False):
        """Hidden states (B, n, D) of a segment (and the cache extended with it when append=True). Without
        gradients, through ``inference_runner`` where one is installed (cuda_graphs.use_cuda_graphs)."""
        if self.inference_runner is not None and not torch.is_grad_enabled():
            return self.inference_runner(seg, inp, cache, append)
        return self.eager_run(seg, inp, cache, append)

    def eager_run(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None = None, append: bool = False):
        """:meth:`run` op by op."""
        x = self.embed(seg, inp)
        noisy = None
        if inp.t is not None:
            actions = inp.noisy_actions if inp.noisy_actions is not None else self._noisy_actions(seg, inp.token_ids)
            noisy = self.time_embed(inp.t) + self.action_cond(actions.to(x.dtype))
        return self.trunk.run(seg, x, noisy, cache=cache, append=append)

    # ------------------------------------------------------------------------------------------------
    # Read-outs of hidden states
    # ------------------------------------------------------------------------------------------------

    def next_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) -> logits (..., V) of the token at the next position."""
        return self.lm_head(hidden)

    def predict_x0(self, noisy_hidden: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, J, Nc*P, D) or (B, J*Nc*P, D) of noisy frames and the last clean frame before each
        (B, J, Nc*P, Dp) -> the clean frames' estimate x0 (B, J, Nc*P, Dp), in fp32: the last frame plus the predicted
        change, so that an untrained model (zero head) predicts "the next frame is the last frame"."""
        return last + self.frame_head(noisy_hidden).float().view_as(last)

    def read_state(self, eof_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a frame's [EOF] -> the normalised state (..., Ds) read off that frame."""
        return self.state_head(eof_hidden).float()

    def state_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Read-out states (..., Ds), (..., Ds) -> (...,) Euclidean distance, each dimension weighted by its
        read-out R^2 (clamped to [0, 1]): dimensions read no better than their mean count nothing."""
        w = self.state_read_r2.clamp(0, 1).to(a.device)
        return (w * (a - b) ** 2).sum(-1).sqrt()

    @property
    def reads_objects(self) -> bool:
        """Whether the model places named objects (trained with keypoints)."""
        return self.keypoint_head is not None

    @property
    def predicts_ahead(self) -> bool:
        """Whether it corrects their placement with the state and predicts where they move (the ahead head)."""
        return self.ahead_head is not None

    def keypoint_outputs(self, frame_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., Nc*P, D) hidden states of a frame's patches -> logits (..., N, P) of each object being in a patch
        of the first camera (where keypoints are given) and its offset (..., N, P, 2) from the patch centre, in
        patch widths (u right, v down)."""
        return self.keypoint_head.outputs(frame_hidden[..., : self.tokens_per_frame, :])

    def locate_objects(self, frame_hidden: torch.Tensor) -> torch.Tensor:
        """(..., Nc*P, D) hidden states of a frame's patches -> (..., N, 2) image (u, v) of the named objects in
        the first camera: the centre of the likeliest patch plus the offset predicted there."""
        return self.keypoint_head.locate(frame_hidden[..., : self.tokens_per_frame, :])

    def read_objects(self, eof_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a frame's [EOF] -> (..., N, 2) image (u, v) of the named objects."""
        return self.object_head.read(eof_hidden)

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
