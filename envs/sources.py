"""The vectors a TaskSpec reads as ``agent_pos`` and ``environment_state``: compiled once, read every step.

    read = compile_source("obs.observation[0:4]", "state", env)   # checked against the env here
    vector = read(observation)                                     # (n,) float64

The syntax is envs/spec.py's (obs, obs.KEY[.SUB], qpos, qvel, body:NAME, site:NAME, each optionally sliced).
A key or a name the env does not have is one WorldmotError naming the spec field.
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import mujoco
import numpy as np

from worldmot.envs.spec import SOURCE, parse_slice
from worldmot.errors import WorldmotError

Source = Callable[[Any], np.ndarray]  # the inner env's observation -> (n,) float64


def compile_source(entry: str, field_name: str, env: Any) -> Source:
    """A reader of ``entry`` for ``env`` (a SpecEnv: its ``inner`` env, and ``model``/``data`` when MuJoCo)."""
    m = SOURCE.match(entry)
    if m is None:
        raise WorldmotError(f"{field_name} entry {entry!r}: expected obs, obs.KEY, qpos, qvel, body:NAME or site:NAME")
    kind, name, cut = m["kind"], m["name"].lstrip(".:"), parse_slice(m["slice"])
    if kind == "obs":
        read = _observation_reader(entry, field_name, env.inner.observation_space, name)
    else:
        read = _mujoco_reader(entry, field_name, env, kind, name)
    return lambda obs: read(obs)[cut]


def _observation_reader(entry: str, field_name: str, space: gym.spaces.Space, path: str) -> Source:
    keys = path.split(".") if path else []
    for depth, key in enumerate(keys):
        if not isinstance(space, gym.spaces.Dict) or key not in space.spaces:
            have = sorted(space.spaces) if isinstance(space, gym.spaces.Dict) else f"a {type(space).__name__}"
            where = "obs." + ".".join(keys[:depth]) if depth else "the observation"
            raise WorldmotError(f"{field_name} entry {entry!r}: {where} has no key {key!r} (it has: {have})")
        space = space.spaces[key]
    leaf = space

    def read(obs: Any) -> np.ndarray:
        for key in keys:
            obs = obs[key]
        # Dict and Tuple observations flatten in the space's own key order (gymnasium.spaces.flatten)
        return np.asarray(gym.spaces.flatten(leaf, obs), np.float64).reshape(-1)
    return read


def _mujoco_reader(entry: str, field_name: str, env: Any, kind: str, name: str) -> Source:
    if not getattr(env, "mujoco", False):
        raise WorldmotError(f"{field_name} entry {entry!r}: {kind} reads a MuJoCo env's state; this env is not one "
                            "(read its observation: obs, obs.KEY)")
    data = env.data
    if kind in ("qpos", "qvel"):
        return lambda obs: getattr(data, kind).copy()
    obj = mujoco.mjtObj.mjOBJ_BODY if kind == "body" else mujoco.mjtObj.mjOBJ_SITE
    index = mujoco.mj_name2id(env.model, obj, name)
    if index < 0:
        raise WorldmotError(f"{field_name} entry {entry!r}: the model has no {kind} {name!r}")
    positions = "xpos" if kind == "body" else "site_xpos"
    return lambda obs: getattr(data, positions)[index].copy()
