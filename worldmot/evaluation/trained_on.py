"""A model evaluated where it was trained: the env id and the features its model folder records.

A Reach model runs on Push without any shape mismatch (the same state and action sizes), and silently
scores nothing; the model folder's ``trained_on`` (written by training: the dataset's robot_type and the
shapes of the features the model read) is checked against the env, unless a transfer is deliberate.
"""
from __future__ import annotations

import gymnasium as gym

from worldmot.errors import WorldmotError


def env_features(env: gym.Env | gym.vector.VectorEnv) -> dict[str, list[int]]:
    """Shapes of the dataset features a recording of ``env`` would have (worldmot.recording's names)."""
    vector = isinstance(env, gym.vector.VectorEnv)
    obs = env.single_observation_space if vector else env.observation_space
    act = env.single_action_space if vector else env.action_space
    feats = {"action": [int(act.shape[0])]}
    if isinstance(obs, gym.spaces.Dict) and "agent_pos" in obs.spaces:
        feats["observation.state"] = [int(obs["agent_pos"].shape[0])]
    if isinstance(obs, gym.spaces.Dict) and "environment_state" in obs.spaces:
        feats["observation.environment_state"] = [int(obs["environment_state"].shape[0])]
    return feats


def check_trained_on(trained_on: dict | None, env_id: str, env: gym.Env | gym.vector.VectorEnv, source: str) -> None:
    """One-line error when the model was trained on another env or other feature shapes (None: not recorded)."""
    if not trained_on:
        return
    hint = "; pass --transfer to evaluate it there on purpose"
    if trained_on.get("env") and trained_on["env"] != env_id:
        raise WorldmotError(f"{source}: trained on {trained_on['env']!r} (expected --env {env_id!r}){hint}")
    trained = trained_on.get("features", {})
    for key, shape in env_features(env).items():
        if key in trained and list(trained[key]) != shape:
            raise WorldmotError(f"{source}: feature {key!r} of shape {trained[key]} (the env's is {shape}){hint}")
