"""Per MT10 task at the env's 64x64: how large the object is in pixels, and (with --checkpoint) how far from
the truth a keypoint-trained model places the object, the goal and the hand on a fresh frame.

    python tools/probes/metaworld_keypoints.py [--checkpoint RUN] [--scenes 10]

Unseen positions (task_set_seed=1), seeds 200000+; a scene is 0-20 random steps after a reset. The object's
size is the projected diameter of the bounding sphere of the geom nearest to the object point. Also prints
the pixel scale (Meta-World's 5 cm success radius at the table's depth). Needs the metaworld extra.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import worldmot
import worldmot.envs  # noqa: F401  registers metaworld/*
from worldmot.envs.metaworld import CAMERA
from worldmot.envs.metaworld_tasks import MT10

sys.path.insert(0, str(Path(__file__).parent))
from keypoints import pixel_error  # noqa: E402

S = 64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a run or model folder trained with keypoints")
    p.add_argument("--scenes", type=int, default=10)
    args = p.parse_args()
    model = worldmot.load(args.checkpoint) if args.checkpoint else None
    if model is not None:
        model.eval()
    env = gym.make("metaworld/MT10", image_size=S, task_set_seed=1)
    u, rng = env.unwrapped, np.random.default_rng(0)
    env.action_space.seed(0)
    az, el = np.radians(CAMERA["azimuth"]), np.radians(CAMERA["elevation"])
    fwd = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    cam = np.array(CAMERA["lookat"]) - CAMERA["distance"] * fwd
    f = (S / 2) / np.tan(np.radians(u.model.vis.global_.fovy) / 2)
    print(f"focal length {f:.1f} px; 5 cm at {CAMERA['distance']} m: {0.05 * f / CAMERA['distance']:.2f} px")
    errors = []
    for k, name in enumerate(MT10):
        spans, errs = [], []
        for i in range(args.scenes):
            obs, _ = env.reset(seed=200000 + k + 10 * i)
            obj = obs["environment_state"][4:7]
            m, d = u.model, u.data
            g = int(np.argmin(np.linalg.norm(d.geom_xpos - obj, axis=1) + 1e3 * (m.geom_group >= 3)))
            spans.append(2 * m.geom_rbound[g] * f / float(np.dot(obj - cam, fwd)))
            if model is not None:
                for _ in range(int(rng.integers(0, 21))):
                    obs, *_ = env.step(env.action_space.sample())
                errs.append(pixel_error(model, obs, u.instruction, S))
        line = f"{name:24s} object {np.mean(spans):5.1f} px across"
        if errs:
            e = np.mean(errs, 0)
            errors.append(e)
            line += f"  placed off: object {e[0]:5.2f} px  goal {e[1]:5.2f} px  hand {e[2]:5.2f} px"
        print(line, flush=True)
    if errors:
        e = np.mean(errors, 0)
        print(f"{'mean':24s} placed off: object {e[0]:5.2f} px  goal {e[1]:5.2f} px  hand {e[2]:5.2f} px")
    env.close()


if __name__ == "__main__":
    main()
