"""Model-predictive control inside the world model: CEM or MPPI over action chunks.

One call of :meth:`Planner.plan` for B envs encodes each env's context once (instruction, frame, state)
into a KV cache, then for every iteration imagines N candidate chunk sequences per env in one batched
call (the cache is shared, not re-encoded), scores them, and refits the sampling distribution. The
first ``execute`` chunks of the final mean are returned; the rest, shifted, warm-starts the next call.

Scores (higher is better):
- "progress": the model's own predicted task progress of the imagined frames, read from its progress
  token after each frame. It needs nothing but the instruction, and it grows smoothly toward the goal.
- "goal": minus the distance between the state the model reads off each imagined frame and off the goal
  image (smooth however far the goal is), plus a Gaussian-kernel distance between the frames' pixels and
  a price on changing the frame's pixel values (so that a faded effector does not look nearer the goal),
  plus (``object_weight``, models trained with keypoints) the distance between where the model reads the
  named objects and the effector in each imagined frame and in the goal image (object_cost.py).

With several cameras (model.sequence.cameras) the pixel terms are each camera's, averaged over the cameras;
the frames, current and goal images are given per camera.

Axes: B envs, N candidates per env, H chunks of the horizon, C actions per chunk, A action dimensions, O named
objects with the effector last (model/mot.py's N); Nc, P, Dp, Ds as in model/mot.py's legend.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import torch

from worldmot.errors import WorldmotError
from worldmot.model import imagination
from worldmot.model.cuda_graphs import use_cuda_graphs
from worldmot.model.world_model import WorldModel
from worldmot.planning.config import PlannerConfig
from worldmot.planning.object_cost import lead_distance, object_cost


@dataclass
class PlanInfo:
    """What the last :meth:`Planner.plan` looked at (for logging and visualisation)."""

    actions: torch.Tensor  # (B, N, H, C, A) the last iteration's candidates
    scores: torch.Tensor  # (B, N)
    best: torch.Tensor  # (B,) index of the best candidate
    frames: list[torch.Tensor]  # H tensors (B, N, Nc*P, Dp): the last iteration's imagined frames
    seconds: float
    iteration_scores: torch.Tensor | None = None  # (iterations, B, N) every iteration's candidate scores
    step_scores: torch.Tensor | None = None  # (B, N, H) the last iteration's score of each imagined step


@functools.lru_cache(maxsize=32)
def _gaussian_kernel(size: int, width: float) -> torch.Tensor:
    """(size, size) exp(-(i - j)^2 / (2 width^2)): unit peak, so every scale's cost has the same ceiling."""
    i = np.arange(size)
    return torch.from_numpy(np.exp(-0.5 * ((i[:, None] - i[None, :]) / width) ** 2)).float()


# kernel widths as fractions of the image side. The cost must still fall when the effector is across the
# image from its goal position, and a narrow kernel is flat there: scoring 16 directions from 40 Reach starts
# with true frames, widths of 1/16, 1/8, 1/4, 0.4 and 1 of the side ranked the best direction first (within
# one neighbour) in 8, 14, 27, 34 and 26 starts
GOAL_SCALES = (0.4,)


def goal_distance(pred: torch.Tensor, goal: torch.Tensor, scales: tuple[float, ...] = GOAL_SCALES) -> torch.Tensor:
    """Gaussian-kernel distance (MMD) between images as signed pixel masses, averaged over kernel widths.

    pred (M, 3, H, W), goal (M, 3, H, W) in [-1, 1] -> (M,). With D = pred - goal, per channel and scale
    sum_ij D_i D_j k(i - j) / (H W) with k a unit-peak Gaussian of width ``scale * max(H, W)``. Moving a blob that is
    far from its goal position lowers it smoothly (raw pixel distances are flat there), and it depends only
    on where the blob is relative to the goal, not on the walls: this is the squared norm of D blurred on
    the whole plane. Blurs evaluated inside the image (zero-padded, renormalised or mirrored) all priced a
    blob by its distance to the walls, and the planner drove into them or shied away from them. The kernel
    is separable, so it is two matrix products.
    """
    H, W = pred.shape[-2:]
    S = max(H, W)
    d = (pred - goal).float()
    costs = []
    for scale in scales:
        kh, kw = (_gaussian_kernel(n, scale * S).to(d.device) for n in (H, W))
        costs.append((d * (kh @ d @ kw)).sum(dim=(-2, -1)).mean(-1) / (H * W))
    return torch.stack(costs).mean(0)


def appearance_change(pred: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """pred (M, 3, S, S), current (M, 3, S, S) in [-1, 1] -> (M,): mean |difference| of each channel's sorted
    pixel values. Blind to where things are, so moving an object costs nothing; erasing or blurring it does."""
    a = pred.flatten(2).sort(-1).values
    b = current.flatten(2).sort(-1).values
    return (a - b).abs().mean(dim=(1, 2))


def per_camera(pixels: torch.Tensor, cameras: int) -> torch.Tensor:
    """Images (M, 3, S, Nc*S) with the cameras side by side (WorldModel.detokenize_frames) -> (M*Nc, 3, S, S)."""
    if cameras == 1:
        return pixels
    return pixels.unflatten(-1, (cameras, -1)).permute(0, 3, 1, 2, 4).flatten(0, 1)


def camera_mean(cost: torch.Tensor, cameras: int) -> torch.Tensor:
    """(M*Nc,) a cost per image of :func:`per_camera` -> (M,) its mean over the cameras."""
    return cost if cameras == 1 else cost.view(-1, cameras).mean(1)


def _same_images(a, b) -> bool:
    """Whether two step's images (an array, or a list of one array per camera) are equal."""
    a, b = (list(x) if isinstance(x, (list, tuple)) else [x] for x in (a, b))
    return len(a) == len(b) and all(np.shape(x) == np.shape(y) and np.array_equal(x, y) for x, y in zip(a, b))


class Planner:
    """CEM / MPPI in imagination for a world model; actions within [low, high] (the env's Box)."""

    def __init__(self, model: WorldModel, cfg: PlannerConfig, low: np.ndarray, high: np.ndarray):
        seq = model.cfg.sequence
        cfg.check(seq.n_steps)
        if cfg.object_weight and not model.reads_objects:
            raise WorldmotError(f"plan.object_weight={cfg.object_weight}: the model reads no keypoints (train it with "
                                "model.lambda_keypoint > 0 on a dataset with observation.keypoints)")
        if cfg.object_weight and cfg.push_distance and cfg.push_object >= seq.keypoints - 1:
            raise WorldmotError(f"plan.push_object={cfg.push_object}: the model places {seq.keypoints - 1} named "
                                f"object(s), expected 0 to {seq.keypoints - 2}")
        self.model, self.cfg = model, cfg
        use_cuda_graphs(model, cfg.cuda_graphs)
        self.C, self.A = seq.chunk, seq.action_dim
        self.low = torch.tensor(np.broadcast_to(low, (self.A,)), dtype=torch.float32)
        self.high = torch.tensor(np.broadcast_to(high, (self.A,)), dtype=torch.float32)
        self.mean: torch.Tensor | None = None  # (B, H, c, A) warm start, c = 1 for constant chunks
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.last: PlanInfo | None = None
        self._goal: tuple | None = None  # (tasks, goal images, what is read off them): one read per episode

    def reset(self, seed: int | None = None) -> None:
        self.mean, self._goal = None, None
        self.generator.manual_seed(self.cfg.seed if seed is None else seed)

    @property
    def _per_chunk(self) -> int:
        return 1 if self.cfg.constant_chunks else self.C

    def _initial_mean(self, B: int) -> torch.Tensor:
        H, c = self.cfg.horizon, self._per_chunk
        mid = ((self.low + self.high) / 2).expand(B, H, c, self.A).clone()
        if self.mean is None or self.mean.shape[0] != B:
            return mid
        k = self.cfg.execute  # shift the previous plan by what was executed, repeat its last chunk
        return torch.cat([self.mean[:, k:], self.mean[:, -1:].expand(-1, k, -1, -1)], 1)

    def _full(self, params: torch.Tensor) -> torch.Tensor:
        """(..., H, c, A) parameters -> (..., H, C, A) env actions."""
        return params.expand(*params.shape[:-2], self.C, self.A) if self.cfg.constant_chunks else params

    def _score(self, context: imagination.Imagination, actions: torch.Tensor, goal: torch.Tensor | None,
               current: torch.Tensor | None = None, goal_state: torch.Tensor | None = None,
               goal_objects: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """actions (B, N, H, C, A) -> scores (B, N), per-step scores (B, N, H) (predicted progress, or minus
        the goal distance) and the imagined frames (H of (B, N, Nc*P, Dp)). goal (B, 3, S, Nc*S) pixels, current
        (B, 3, S, Nc*S) pixels (the cameras side by side), goal_state (B, Ds) the state and goal_objects (B, O, 2) the keypoints read off
        the goal image."""
        B, N, H = actions.shape[:3]
        im = context.expand(N)
        now_objects = previous = im.objects
        rep = lambda x: None if x is None else x.repeat_interleave(N, 0)
        goal, current, goal_state, goal_objects = rep(goal), rep(current), rep(goal_state), rep(goal_objects)
        per_step, frames = [], []
        for h in range(H):
            imagination.write_step(im, actions[:, :, h].reshape(B * N, self.C, self.A))
            frame = imagination.imagine_frame(im, self.cfg.flow_steps, self.generator)
            frames.append(frame.view(B, N, *frame.shape[1:]))
            if goal is None:
                per_step.append(im.progress())
            else:
                Nc = self.model.cameras
                pixels = per_camera(self.model.detokenize_frames(frame).float(), Nc)
                cost = 0.0
                if self.cfg.pixel_weight:
                    cost = self.cfg.pixel_weight * camera_mean(goal_distance(pixels, per_camera(goal, Nc)), Nc)
                if current is not None and self.cfg.keep_weight:
                    change = appearance_change(pixels, per_camera(current, Nc))
                    cost = cost + self.cfg.keep_weight * camera_mean(change, Nc)
                if goal_state is not None and self.cfg.state_weight:
                    cost = cost + self.cfg.state_weight * self.model.state_distance(im.state, goal_state)
                if goal_objects is not None:
                    objects = im.ahead if self.cfg.predicted_objects and im.ahead is not None else im.objects
                    cost = cost + self.cfg.object_weight * object_cost(objects, now_objects, goal_objects,
                                                                       self.cfg.push_distance, self.cfg.push_tolerance,
                                                                       self.cfg.push_object)
                    if self.cfg.lead_chunks:
                        lead = lead_distance(objects[:, -1], previous[:, -1], goal_objects[:, -1], self.cfg.lead_chunks)
                        cost = cost + self.cfg.object_weight * lead
                    previous = objects
                per_step.append(-cost)
        s = torch.stack(per_step, 1).view(B, N, H)
        return s.mean(-1) + self.cfg.final_weight * s[..., -1], s, frames

    def _goal_readout(self, tasks: list[str], goals: np.ndarray | list[np.ndarray], goal_tokens: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The state (B, Ds) and the keypoints (B, O, 2) or None read off the goal images, encoded again only
        when the tasks or the images change (they are fixed within an episode, and encoding them cost 11% of
        a replanning step)."""
        if self._goal is None or self._goal[0] != list(tasks) or not _same_images(self._goal[1], goals):
            read = imagination.start(self.model, tasks, goal_tokens)
            kept = [np.array(g) for g in goals] if isinstance(goals, (list, tuple)) else np.array(goals)
            self._goal = (list(tasks), kept, read.state, read.objects)
        return self._goal[2], self._goal[3]

    @staticmethod
    def _effector_onto(goal_objects: torch.Tensor, k: int) -> torch.Tensor:
        """(B, O, 2) keypoints on the goal images -> the same with the effector's (the last) at object k's."""
        if k >= goal_objects.shape[1] - 1:
            raise WorldmotError(f"plan.effector_goal={k}: the model places {goal_objects.shape[1] - 1} named "
                                "object(s) besides the effector")
        return torch.cat([goal_objects[:, :-1], goal_objects[:, k:k + 1]], 1)

    def _ar_proposals(self, context: imagination.Imagination, M: int) -> torch.Tensor:
        """(B, M, H, c, A) sequences that repeat a chunk sampled from the model's own AR policy."""
        B = context.batch_size
        chunk, _ = imagination.write_step(context.expand(M), None, temperature=1.0, generator=self.generator)
        chunk = chunk.float().view(B, M, 1, self.C, self.A)
        if self.cfg.constant_chunks:
            chunk = chunk.mean(3, keepdim=True)
        return chunk.expand(-1, -1, self.cfg.horizon, -1, -1)

    @torch.no_grad()
    def plan(self, tasks: list[str], frames: np.ndarray | list[np.ndarray], states: np.ndarray | None = None,
             goals: np.ndarray | list[np.ndarray] | None = None) -> np.ndarray:
        """frames (B, H, W, 3) uint8, states (B, S), goals (B, H, W, 3) -> actions (B, execute * C, A). With
        several cameras, frames and goals are lists of one such array per camera (WorldModel.tokenize_frames).
        On CUDA the model runs under bf16 autocast; the sampling distribution stays fp32 on the CPU."""
        dev = self.model.device.type
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            return self._plan(tasks, frames, states, goals)

    def _plan(self, tasks: list[str], frames: np.ndarray | list[np.ndarray], states: np.ndarray | None,
              goals: np.ndarray | list[np.ndarray] | None) -> np.ndarray:
        t0 = time.perf_counter()
        cfg, model = self.cfg, self.model
        B, N = len(tasks), cfg.candidates
        tokens = model.tokenize_frames(frames)
        st = None if states is None else torch.as_tensor(np.asarray(states), dtype=torch.float32)
        context = imagination.start(model, tasks, tokens, st, horizon=cfg.horizon)
        goal = current = goal_state = goal_objects = None
        if cfg.cost == "goal":
            if goals is None:
                raise ValueError("plan.cost='goal' needs goal images (the env's render_goal())")
            goal_tokens = model.tokenize_frames(goals)
            goal = model.detokenize_frames(goal_tokens).float()
            current = model.detokenize_frames(tokens).float()
            if cfg.state_weight or cfg.object_weight:
                goal_state, goal_objects = self._goal_readout(tasks, goals, goal_tokens)
                goal_state = goal_state if cfg.state_weight else None
                goal_objects = goal_objects if cfg.object_weight else None
                if goal_objects is not None and cfg.effector_goal >= 0:
                    goal_objects = self._effector_onto(goal_objects, cfg.effector_goal)
        mean = self._initial_mean(B)
        std = torch.full_like(mean, cfg.init_std)
        span = (self.high - self.low)
        history = []
        for it in range(cfg.iterations):
            noise = torch.randn((B, N, *mean.shape[1:]), generator=self.generator)
            params = mean[:, None] + std[:, None] * noise
            params[:, 0] = mean  # the current mean is always a candidate (keeps a good warm start)
            if it == 0 and cfg.ar_proposals:
                M = min(cfg.ar_proposals, N - 1)
                params[:, N - M:] = self._ar_proposals(context, M)
            params = torch.maximum(torch.minimum(params, self.high), self.low)
            actions = self._full(params)
            scores, step_scores, imagined = self._score(context, actions, goal, current, goal_state, goal_objects)
            scores = scores.float().cpu()  # the sampling distribution lives on the CPU: B x N x H x c x A numbers
            history.append(scores)
            top, elite = scores.topk(cfg.elites, dim=1)
            chosen = torch.gather(params, 1, elite[:, :, None, None, None].expand(-1, -1, *params.shape[2:]))
            if cfg.method == "cem":
                mean, std = chosen.mean(1), chosen.std(1, unbiased=False)
            else:  # MPPI over the elites (as TD-MPC2), scores rescaled to [-1, 0] so temperature is unit-free
                z = (top - top[:, :1]) / (top[:, :1] - top[:, -1:]).clamp(min=1e-8)
                w = torch.softmax(z / cfg.temperature, dim=1)[:, :, None, None, None]
                mean = (w * chosen).sum(1)
                std = (w * (chosen - mean[:, None]) ** 2).sum(1).sqrt()
            std = std.clamp(min=cfg.min_std * float(span.max()) / 2)
        self.mean = mean
        self.last = PlanInfo(actions, scores, scores.argmax(1), imagined, time.perf_counter() - t0,
                             torch.stack(history), step_scores)
        out = self._full(mean)[:, : cfg.execute]  # (B, execute, C, A)
        return out.reshape(B, cfg.execute * self.C, self.A).numpy()
