"""The code that the specs of Gymnasium's Reacher-v5 and Pusher-v5 (configs/env/reacher-v5.yaml,
pusher-v5.yaml) need beyond YAML: larger visuals, success and progress, Reacher's goal configuration.

Each hook takes the SpecEnv (``env.model``, ``env.data`` are the wrapped env's MuJoCo model and data).
Reacher: success when the fingertip is within 0.02 m of the target; progress 1 at success, linear in the
distance, 0 at 0.22 m. Pusher: success when the object's centre is within 0.05 m of the goal's (xy);
progress 1 at success, else 0.2 x (arm tip close to the object) + 0.8 x (object close to the goal).
"""
from __future__ import annotations

import numpy as np

from worldmot.envs.experts import two_link_ik
from worldmot.envs.tabletop import linear_progress

REACHER_SUCCESS = 0.02
REACHER_LINKS = (0.1, 0.11)
PUSHER_SUCCESS = 0.05


def _xy(env, body: str) -> np.ndarray:
    return env.data.body(body).xpos[:2].copy()


def reacher_visuals(env) -> None:
    """The target and the fingertip drawn larger than in the original model (visual geoms only; the physics is
    unchanged), so that they are visible at 64x64."""
    env.model.geom("target").size[0] = 0.02
    env.model.geom("fingertip").size[0] = 0.015


def reacher_score(env) -> tuple[float, bool]:
    d = float(np.linalg.norm(_xy(env, "target") - _xy(env, "fingertip")))
    success = d <= REACHER_SUCCESS
    return (1.0 if success else linear_progress(d, REACHER_SUCCESS, 0.2)), success


def reacher_goal(env) -> None:
    """Inverse kinematics of the 2-link arm (elbow on the side it is now): the fingertip on the target."""
    x, y = _xy(env, "target")
    env.data.qpos[:2] = two_link_ik(float(x), float(y), *REACHER_LINKS, elbow_sign=env.data.qpos[1])
    env.data.qvel[:2] = 0.0


def pusher_score(env) -> tuple[float, bool]:
    obj, goal, tip = _xy(env, "object"), _xy(env, "goal"), _xy(env, "tips_arm")
    d_goal = float(np.linalg.norm(obj - goal))
    if d_goal <= PUSHER_SUCCESS:
        return 1.0, True
    near = linear_progress(float(np.linalg.norm(tip - obj)), 0.08, 0.6)
    moved = linear_progress(d_goal, PUSHER_SUCCESS, 0.4)
    return 0.2 * near + 0.8 * moved, False
