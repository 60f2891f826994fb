"""How precisely does a keypoint-trained model place the objects on a frame, and can the expert act on it?

    python tools/probes/keypoints.py --checkpoint RUN --env worldmot/Push-v0 [--scenes 40] [--episodes 10]

On unseen seeds (from 200000; the evaluations use 100000+), with the states the planner gives the model:
1. fresh scenes: 0-30 random steps after reset; mean error of every keypoint (named objects, then the
   effector) in pixels.
2. mid-task: the scripted expert's episodes stopped at a random step (Push: mostly in contact, where the
   effector covers part of the block and the block part of the pad).
3. built-in tasks only: the scripted expert acting on the model's positions (named objects and effector
   read off every frame and mapped back to the table) instead of the simulator's: its success bounds what
   a planner pricing these positions can get from the model.
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch
import worldmot.envs  # registers the Gymnasium ids (and binds worldmot, for worldmot.load)
from tqdm import tqdm
from worldmot.stepping import collect_episodes
from worldmot.envs.tabletop import VIEW, TabletopEnv
from worldmot.policies import make_policy

from worldmot.model import imagination


@torch.no_grad()
def placed(model, tasks: list[str], frames: np.ndarray, states: np.ndarray) -> np.ndarray:
    """frames (B, S, S, 3), states (B, Ds) -> (B, K, 2) image (u, v) where the model places the keypoints."""
    tokens = model.tokenize_frames(frames)
    im = imagination.start(model, tasks, tokens, torch.as_tensor(states, dtype=torch.float32), horizon=1)
    return im.objects.cpu().numpy()


def pixel_error(model, obs: dict, task: str, size: int) -> np.ndarray:
    """(K,) distance in pixels between the model's and the simulator's keypoints on one observation."""
    uv = placed(model, [task], obs["pixels"]["top"][None], obs["agent_pos"][None])[0]
    return np.linalg.norm(uv - obs["keypoints"].reshape(-1, 2), axis=-1) * size


class ExpertOnReadouts:
    """The scripted expert, shown the model's positions instead of the simulator's (tabletop tasks)."""

    def __init__(self, model, env):
        self.model, self.expert, self.named = model, make_policy("scripted", env), env.unwrapped.named_objects

    @property
    def reasoning(self):
        return self.expert.reasoning

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset(seed)

    def act(self, obs: dict) -> np.ndarray:
        uv = placed(self.model, [obs["task"]], obs["pixels"]["top"][None], obs["agent_pos"][None])[0]
        xy = np.stack([(uv[:, 0] - 0.5) * VIEW, (0.5 - uv[:, 1]) * VIEW], -1)  # the orthographic top view
        state = obs["environment_state"].copy()
        state[: 2 * self.named] = xy[:-1].reshape(-1)
        return self.expert.act({**obs, "agent_pos": xy[-1].astype(np.float32), "environment_state": state})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a run folder or model folder trained with keypoints")
    p.add_argument("--env", default="worldmot/Push-v0")
    p.add_argument("--scenes", type=int, default=40, help="scenes for each of the two read-out tests")
    p.add_argument("--episodes", type=int, default=10, help="episodes of the expert acting on the read-outs")
    p.add_argument("--seed", type=int, default=200000)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    model = worldmot.load(args.checkpoint)
    model.eval()
    if not model.reads_objects:
        raise SystemExit(f"{args.checkpoint}: the model reads no keypoints; train it on a recording with "
                         "observation.keypoints (the tiny config learns them)")
    env = gym.make(args.env)
    size = env.observation_space["pixels"]["top"].shape[0]
    rng = np.random.default_rng(args.seed)
    fresh, mid = [], []
    for i in tqdm(range(args.scenes), desc="fresh scenes"):
        obs, info = env.reset(seed=args.seed + i)
        for _ in range(int(rng.integers(0, 31))):  # seeded, so the figures repeat
            obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32))
        fresh.append(pixel_error(model, obs, info["instruction"], size))
    expert = make_policy("scripted", env)
    for i in tqdm(range(args.scenes), desc="mid-task scenes"):
        stop = int(rng.integers(5, 40))
        obs, info = env.reset(seed=args.seed + 1000 + i)
        expert.reset(seed=i)
        for _ in range(stop):
            obs, _, terminated, truncated, info = env.step(expert.act({**obs, "task": info["instruction"]}))
            if terminated or truncated:
                break
        mid.append(pixel_error(model, obs, info["instruction"], size))
    result = {"checkpoint": args.checkpoint, "env": args.env,
              "fresh_px": [round(float(e), 3) for e in np.mean(fresh, 0)],
              "mid_task_px": [round(float(e), 3) for e in np.mean(mid, 0)]}
    if isinstance(env.unwrapped, TabletopEnv) and args.episodes:
        policy = ExpertOnReadouts(model, env)
        runs = [collect_episodes(env, policy, seed=args.seed + 2000 + i)
                for i in tqdm(range(args.episodes), desc="expert on read-outs")]
        result["expert_on_readouts_success"] = float(np.mean([r.success for r in runs]))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
