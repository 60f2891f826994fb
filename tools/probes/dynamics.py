"""How well a model predicts the effector one chunk ahead: what the planner's object cost ranks candidates by.

    python tools/probes/dynamics.py --checkpoint RUN --env worldmot/Reacher-v5 --scenes 60

From fresh scenes (seeds 300000+, 3-19 random actions each, so the arm is moving), every one of 8 actions
(the unit circle, clipped to the action box) and no action is played for one chunk in the simulator and
imagined by the model from the same frame and state. Reports, in pixels (medians over scenes):
- ahead / imagined: the effector where the model predicts it at [EOA] (Imagination.ahead, models trained
  with model.lambda_keypoint_ahead) and where it places it on the imagined frame, against the simulator;
  still: where it was (the error of a model that ignores both the action and the motion);
- action effect: how far the 9 outcomes spread around their mean, in the simulator and in the model, and
  the correlation of those deviations (1: the model moves the effector the way the action does);
- ranked: scenes where the action the model puts nearest the first named object (the target) is one of
  the two truly nearest.
MuJoCo envs with 2-D actions (the state is restored from qpos / qvel between actions).
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch
import worldmot.envs

import worldmot
from worldmot.model import imagination


def play(env, qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray, steps: int) -> np.ndarray:
    """The effector's keypoint (2,) in pixels of a 1-side image after ``steps`` times ``action`` from (qpos, qvel)."""
    base = env.unwrapped
    base.data.qpos[:], base.data.qvel[:] = qpos, qvel
    for _ in range(steps):
        obs, *_ = base.step(action)
    return obs["keypoints"].reshape(-1, 2)[-1]


def scene(model, env, seed: int, rng: np.random.Generator, actions: np.ndarray) -> dict[str, float]:
    obs, info = env.reset(seed=seed)
    for _ in range(int(rng.integers(3, 20))):
        obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
    data = env.unwrapped.data
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    C, size = model.cfg.sequence.chunk, model.cfg.sequence.image_size
    with torch.no_grad():
        im = imagination.start(model, [info["instruction"]], model.tokenize_frames(obs["pixels"]["top"][None]),
                               torch.as_tensor(obs["agent_pos"][None])).expand(len(actions))
        imagination.write_step(im, torch.as_tensor(np.repeat(actions[:, None], C, 1), dtype=torch.float32))
        ahead = None if im.ahead is None else im.ahead[:, -1].numpy() * size
        imagination.imagine_frame(im, 1, torch.Generator().manual_seed(seed))
        imagined = im.objects[:, -1].numpy() * size
    true = np.stack([play(env, qpos, qvel, a, C) for a in actions]) * size
    now = obs["keypoints"].reshape(-1, 2)[-1] * size
    target = obs["keypoints"].reshape(-1, 2)[0] * size
    pred = ahead if ahead is not None else imagined
    dt, dp = true - true.mean(0), pred - pred.mean(0)
    nearest_true = np.argsort(np.linalg.norm(true - target, axis=1))[:2]
    out = {"imagined": np.linalg.norm(imagined - true, axis=1).mean(), "still": np.linalg.norm(now - true, axis=1).mean(),
           "effect_true": np.abs(dt).mean(), "effect_model": np.abs(dp).mean(),
           "effect_corr": (dt * dp).sum() / np.sqrt((dt ** 2).sum() * (dp ** 2).sum() + 1e-12),
           "ranked": float(np.argmin(np.linalg.norm(pred - target, axis=1)) in nearest_true)}
    if ahead is not None:
        out["ahead"] = np.linalg.norm(ahead - true, axis=1).mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--env", default="worldmot/Reacher-v5")
    parser.add_argument("--scenes", type=int, default=60)
    args = parser.parse_args()
    model = worldmot.load(args.checkpoint)
    env = gym.make(args.env)
    low, high = env.action_space.low, env.action_space.high
    circle = [np.array([np.cos(a), np.sin(a)]) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    actions = np.clip(np.stack(circle + [np.zeros(2)]) * high, low, high).astype(np.float32)
    rng = np.random.default_rng(0)
    rows = [scene(model, env, 300_000 + i, rng, actions) for i in range(args.scenes)]
    summary = {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0] if k != "ranked"}
    summary["ranked"] = f"{int(sum(r['ranked'] for r in rows))}/{len(rows)}"
    print(json.dumps({"checkpoint": args.checkpoint, "env": args.env, "scenes": args.scenes, **summary}))


if __name__ == "__main__":
    main()
