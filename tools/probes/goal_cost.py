"""Does the goal-image cost point the planner the right way? Scored on Reach starts, with true or imagined frames.

From each start (unseen seeds), the effector moves in K directions at full speed for ``horizon`` frame
steps (``horizon * chunk`` env steps). Each direction's frames are scored with the planner's goal cost
(plan.cost=goal, per step, mean + last as the planner does). A start counts as ranked right when the best
scored direction is the truly best one or its neighbour; regret is how much farther from the target the
chosen direction ends than the best one (metres). With ``--frames true`` the simulator renders the frames (a
perfect world model: this measures the cost alone); with ``--frames model`` the world model of
--checkpoint imagines them, as inside the planner (``--flow-steps``, default 1). With --checkpoint the
state the model reads off each frame and off the goal image is scored too (plan.state_weight).

    python tools/probes/goal_cost.py [--frames true|model] [--checkpoint RUN] [--starts 40] [--directions 16]
        [--keep-weights 0 5] [--state-weights 0 1]
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch
from tqdm import tqdm
from worldmot.envs.reach import ReachEnv
from worldmot.envs.tabletop import WORKSPACE

from worldmot.planning.planner import appearance_change, goal_distance


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) in [-1, 1]."""
    return torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def true_frames(env: ReachEnv, seed: int, directions: np.ndarray, steps_per_frame: int, horizon: int) -> np.ndarray:
    """(K, horizon, S, S, 3): the simulator's frames after each frame step of every direction."""
    out = []
    for d in directions:
        env.reset(seed=seed)
        frames = []
        for _ in range(horizon):
            for _ in range(steps_per_frame):
                obs, *_ = env.step(d)
            frames.append(obs["pixels"]["top"])
        out.append(frames)
    return np.asarray(out)


@torch.no_grad()
def imagined_frames(model, obs: dict, instruction: str, directions: np.ndarray, horizon: int,
                    flow_steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(K, horizon, S, S, 3): the world model's imagined frames for every direction, and (K, horizon, Ds) the
    states it reads off them."""
    from worldmot.model import imagination

    K, C = len(directions), model.cfg.sequence.chunk
    tokens = model.tokenize_frames(obs["pixels"]["top"][None])
    state = torch.as_tensor(obs["agent_pos"][None])
    im = imagination.start(model, [instruction], tokens, state, horizon=horizon).expand(K)
    chunk = torch.as_tensor(directions, dtype=torch.float32)[:, None].expand(K, C, 2)
    generator = torch.Generator().manual_seed(0)
    frames, states = [], []
    for _ in range(horizon):
        imagination.write_step(im, chunk)
        pixels = model.detokenize_frames(imagination.imagine_frame(im, flow_steps, generator)).float()
        frames.append(((pixels.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
        states.append(im.state.numpy())
    return np.stack(frames, 1), np.stack(states, 1)


@torch.no_grad()
def read_states(model, instruction: str, frames: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, Ds): the normalised state the model reads off each frame on its own."""
    from worldmot.model import imagination

    return imagination.start(model, [instruction] * len(frames), model.tokenize_frames(frames)).state.numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", choices=["true", "model"], default="true")
    p.add_argument("--checkpoint", default=None, help="run folder; needed by --frames model, sets chunk")
    p.add_argument("--starts", type=int, default=40)
    p.add_argument("--directions", type=int, default=16)
    p.add_argument("--horizon", type=int, default=2, help="frame steps (plan.horizon)")
    p.add_argument("--chunk", type=int, default=2, help="env steps per frame step without --checkpoint")
    p.add_argument("--keep-weights", type=float, nargs="+", default=[0.0, 5.0], help="plan.keep_weight values to score")
    p.add_argument("--state-weights", type=float, nargs="+", default=[0.0, 1.0],
                   help="plan.state_weight values to score (with --checkpoint)")
    p.add_argument("--flow-steps", type=int, default=1, help="denoising steps per imagined frame (plan.flow_steps)")
    p.add_argument("--seed", type=int, default=100000)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    model = None
    if args.checkpoint:
        from worldmot.checkpoint import load_model

        model = load_model(args.checkpoint).eval()
    elif args.frames == "model":
        p.error("--frames model needs --checkpoint")
    chunk = model.cfg.sequence.chunk if model is not None else args.chunk
    angles = np.arange(args.directions) * 2 * np.pi / args.directions
    directions = np.stack([np.cos(angles), np.sin(angles)], 1)
    env = ReachEnv()
    # (goal distance (K, H), appearance change (K, H), state distance (K, H), final distance to the target (K,))
    scored = []
    for seed in tqdm(range(args.seed, args.seed + args.starts), desc=f"{args.frames} frames", unit="start"):
        obs, info = env.reset(seed=seed)
        target = env.targets[env.named]
        goal, current = to_pixels(env.render_goal()[None]), to_pixels(obs["pixels"]["top"][None])
        if args.frames == "true":
            frames = true_frames(env, seed, directions, chunk, args.horizon)
            states = None if model is None else read_states(
                model, info["instruction"], frames.reshape(-1, *frames.shape[2:])).reshape(*frames.shape[:2], -1)
        else:
            frames, states = imagined_frames(model, obs, info["instruction"], directions, args.horizon, args.flow_steps)
        sd = np.zeros(frames.shape[:2]) if states is None else model.state_distance(
            torch.as_tensor(states), torch.as_tensor(read_states(model, info["instruction"], env.render_goal()[None]))
        ).numpy()  # as the planner weighs it
        # per-step clipping to the workspace along a straight line ends where clipping the whole move does
        ends = np.clip(obs["agent_pos"][None] + directions * env.max_step * chunk * args.horizon, -WORKSPACE, WORKSPACE)
        pix = to_pixels(frames.reshape(-1, *frames.shape[2:]))
        n = len(pix)
        gd = goal_distance(pix, goal.expand(n, -1, -1, -1)).view(len(directions), args.horizon)
        ap = appearance_change(pix, current.expand(n, -1, -1, -1)).view(len(directions), args.horizon)
        scored.append((gd.numpy(), ap.numpy(), sd, np.linalg.norm(ends - target, axis=1)))
    results = {}
    K = args.directions
    for w, ws in itertools.product(args.keep_weights, args.state_weights if model is not None else [0.0]):
        right, regret = 0, []
        for gd, ap, sd, dist in scored:
            cost = gd + w * ap + ws * sd
            cost = cost.mean(1) + cost[:, -1]
            best, truth = int(cost.argmin()), int(dist.argmin())
            right += min(abs(best - truth), K - abs(best - truth)) <= 1
            regret.append(float(dist[best] - dist[truth]))
        results[f"keep_weight={w},state_weight={ws}"] = {
            "ranked_right": right, "starts": len(scored), "mean_regret_m": float(np.mean(regret))}
        print(f"{args.frames} frames, keep_weight {w}, state_weight {ws}: ranked right in {right}/{len(scored)} "
              f"starts, mean regret {np.mean(regret):.3f} m")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
