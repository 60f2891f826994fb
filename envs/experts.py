"""Scripted experts: controllers that work from the observation alone, batched.

An expert is called as ``expert(agent_pos (B, S), environment_state (B, E), tasks list[str])`` and returns
``(actions (B, A) float32 in [-1, 1], subtasks list[str])``. It reads nothing from the simulator, so it
runs the same on a single env (B = 1) and on vector-env observations. The subtask text (the reasoning the
model learns to write) says where the expert is going: "move to red at +21,-13", "push block +05,-20 pad
+30,+12" (``worldmot.reasoning`` writes and reads the positions). Reach takes the colour name from the instruction
(``parse_colours``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from worldmot.envs.instructions import parse_colours
from worldmot.envs.metaworld_expert import MetaWorldExpert
from worldmot.errors import WorldmotError
from worldmot.reasoning import format_position


def _limit(delta: np.ndarray, max_step: float) -> np.ndarray:
    """Action that moves by ``delta`` metres, shortened (same direction) to at most one full step."""
    norm = float(np.linalg.norm(delta))
    if norm > max_step:
        delta = delta * (max_step / norm)
    return (delta / max_step).astype(np.float32)


def _name(colours: list[str], i: int, default: str) -> str:
    return colours[i] if len(colours) > i else default


@dataclass
class ReachExpert:
    """Straight to the named target (environment_state[:2]) at full speed, then stay."""

    max_step: float = 0.04

    def __call__(self, agent_pos, environment_state, tasks):
        actions, subtasks = [], []
        for p, s, task in zip(agent_pos, environment_state, tasks):
            target = _name(parse_colours(task), 0, "target")
            delta = np.asarray(s[:2], np.float64) - np.asarray(p[:2], np.float64)
            actions.append(_limit(delta, self.max_step))
            done = np.linalg.norm(delta) < 0.01
            subtasks.append(f"{'stay on' if done else 'move to'} {target} at {format_position(s[:2])}")
        return np.stack(actions), subtasks


def _segment_distance(p, a, b) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


@dataclass
class PushExpert:
    """Go behind the named block (on the far side from its pad, around the block if needed), then push.

    While pushing, the effector aims at the contact point on the line from the block to the pad, one
    step further along: the block follows the effector through the contact, and recomputing the line
    from the block's current position every step corrects any drift.
    """

    max_step: float = 0.04
    contact: float = 0.08  # block collision radius + effector radius
    workspace: float = 0.45

    def act_one(self, p, b, g) -> tuple[np.ndarray, str]:
        where = f"block {format_position(b)} pad {format_position(g)}"  # the colours are in the instruction; 32 bytes of reasoning
        d = g - b
        dist = float(np.linalg.norm(d))
        if dist < 0.015:
            return np.zeros(2, np.float32), f"done {where}"
        u = d / dist
        rel = p - b
        along = float(np.dot(rel, u))
        lateral = rel - along * u
        if along < -0.6 * self.contact and np.linalg.norm(lateral) < 0.025:
            target = b - u * self.contact + u * min(self.max_step, dist)
            return _limit(target - p, self.max_step), f"push {where}"
        behind = np.clip(b - u * (self.contact + 0.02), -self.workspace, self.workspace)
        if along > -0.02 and _segment_distance(b, p, behind) < self.contact + 0.01:
            # the straight way would hit the block: go around its flank first, to a point from which
            # the straight way to the pushing position is clear
            perp = np.array([-u[1], u[0]])
            side = 1.0 if np.dot(lateral, perp) >= 0 else -1.0
            flank = b + perp * side * (self.contact + 0.04) - u * 0.04
            behind = np.clip(flank, -self.workspace, self.workspace)
        return _limit(behind - p, self.max_step), f"behind {where}"

    def __call__(self, agent_pos, environment_state, tasks):
        actions, subtasks = [], []
        for p, s, task in zip(agent_pos, environment_state, tasks):
            s = np.asarray(s, np.float64)
            a, text = self.act_one(np.asarray(p[:2], np.float64), s[0:2], s[2:4])
            actions.append(a)
            subtasks.append(text)
        return np.stack(actions), subtasks


def two_link_ik(x: float, y: float, l1: float, l2: float, elbow_sign: float) -> tuple[float, float]:
    """Joint angles (q0, q1) that put a 2-link arm's tip at (x, y); ``elbow_sign`` picks the branch."""
    cos_q1 = np.clip((x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
    q1 = float(np.arccos(cos_q1)) * (1.0 if elbow_sign >= 0 else -1.0)
    q0 = float(np.arctan2(y, x) - np.arctan2(l2 * np.sin(q1), l1 + l2 * np.cos(q1)))
    return q0, q1


@dataclass
class ReacherExpert:
    """Inverse kinematics plus joint-space PD for Gymnasium's Reacher (torque control), from the observation.

    agent_pos = [cos q0, cos q1, sin q0, sin q1, dq0, dq1, fingertip xy], environment_state = [target xy,
    fingertip xy].
    The joints' dynamics are dominated by their armature (1) and gear (200), so
    ``u = kp * (q* - q) - kd * dq`` with omega = sqrt(200 kp) ~ 25 rad/s is about critically damped.
    The elbow keeps the side it is on (no flip through the singular straight arm).
    """

    kp: float = 3.0
    kd: float = 0.25
    link1: float = 0.1
    link2: float = 0.11

    def __call__(self, agent_pos, environment_state, tasks):
        actions, subtasks = [], []
        for p, s in zip(agent_pos, environment_state):
            q = np.array([np.arctan2(p[2], p[0]), np.arctan2(p[3], p[1])])
            qd = np.asarray(p[4:6], np.float64)
            q_goal = np.array(two_link_ik(float(s[0]), float(s[1]), self.link1, self.link2, q[1]))
            error = (q_goal - q + np.pi) % (2 * np.pi) - np.pi  # the shorter way round
            actions.append(np.clip(self.kp * error - self.kd * qd, -1.0, 1.0).astype(np.float32))
            near = np.linalg.norm(np.asarray(s[0:2]) - np.asarray(s[2:4])) < 0.02
            subtasks.append("hold the fingertip on the target" if near else "move the fingertip to the target")
        return np.stack(actions), subtasks


EXPERTS = {"reach": ReachExpert, "push": PushExpert, "reacher": ReacherExpert, "metaworld": MetaWorldExpert}


def make_expert(name: str, **kwargs):
    """The expert registered under ``name`` (an env's ``expert_spec``)."""
    if name not in EXPERTS:
        raise WorldmotError(f"no scripted expert for task {name!r}; experts exist for: {', '.join(sorted(EXPERTS))}")
    return EXPERTS[name](**kwargs)


def expert_of(env: gym.Env | gym.vector.VectorEnv) -> Callable | None:
    """The scripted expert of ``env`` (its ``expert_spec``, looked up through wrappers and in the first sub-env of
    a vector env), or None where it has none."""
    try:
        if isinstance(env, gym.vector.VectorEnv):
            name, kwargs = env.get_attr("expert_spec")[0]
        else:
            name, kwargs = env.get_wrapper_attr("expert_spec")
    except AttributeError:
        return None
    return make_expert(name, **kwargs)
