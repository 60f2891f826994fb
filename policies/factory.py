"""``make_policy(name, env)``: build a policy by name for an env (single or vector)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import gymnasium as gym

from worldmot.envs.experts import expert_of
from worldmot.errors import WorldmotError
from worldmot.policies.base import Policy

# name -> builder(env, **kwargs); other modules add theirs with register_policy
_BUILDERS: dict[str, Callable[..., Policy]] = {}


def register_policy(name: str, builder: Callable[..., Policy]) -> None:
    _BUILDERS[name] = builder


def policy_names() -> list[str]:
    return sorted(_BUILDERS)


def single_action_space(env: gym.Env | gym.vector.VectorEnv) -> gym.spaces.Space:
    return env.single_action_space if isinstance(env, gym.vector.VectorEnv) else env.action_space


def make_policy(name: str, env: gym.Env | gym.vector.VectorEnv, **kwargs: Any) -> Policy:
    """A policy called ``name`` ("random", "scripted", ...) for ``env``; kwargs go to its builder."""
    if name not in _BUILDERS:
        raise WorldmotError(f"unknown policy {name!r}; choices: {', '.join(policy_names())}")
    return _BUILDERS[name](env, **kwargs)


def _random(env, seed: int | None = None, **_ignored) -> Policy:
    from worldmot.policies.random import RandomPolicy

    return RandomPolicy(single_action_space(env), seed=seed)


def _scripted(env, action_noise: float = 0.0, noise_duty: float = 1.0, seed: int | None = None, **_ignored) -> Policy:
    from worldmot.policies.scripted import ScriptedPolicy

    expert = expert_of(env)
    if expert is None:
        raise WorldmotError("policy 'scripted': this env has no scripted expert (no expert_spec attribute)")
    return ScriptedPolicy(expert, action_noise=action_noise, noise_duty=noise_duty, seed=seed)


register_policy("random", _random)
register_policy("scripted", _scripted)


def _fitted_model(env, model):
    from worldmot.policies.chunked import check_model_fits, state_observation_keys

    if model is None:
        raise WorldmotError("this policy needs a trained world model (--checkpoint RUN)")
    space = single_action_space(env)
    obs_space = env.single_observation_space if isinstance(env, gym.vector.VectorEnv) else env.observation_space
    spaces = obs_space.spaces if isinstance(obs_space, gym.spaces.Dict) else {}
    state_dim = None
    if "agent_pos" in spaces:
        keys = state_observation_keys(model)
        missing = [k for k in keys if k not in spaces]
        if missing:
            raise WorldmotError(f"the model's state reads observation[{missing[0]!r}], which this env does not have "
                                f"(its observation keys: {sorted(spaces)})")
        state_dim = sum(int(spaces[k].shape[0]) for k in keys)
    check_model_fits(model, int(space.shape[0]), state_dim)
    return model


def _model(env, model=None, seed: int | None = None, temperature: float = 0.0, reason: bool = False,
           **_ignored) -> Policy:
    from worldmot.policies.model import ModelPolicy

    return ModelPolicy(_fitted_model(env, model), temperature=temperature, reason=reason, seed=seed or 0)


def _planner(env, model=None, plan=None, seed: int | None = None, trace: bool = False, **_ignored) -> Policy:
    from worldmot.planning import PlannerConfig
    from worldmot.policies.planner import PlannerPolicy

    cfg = plan if plan is not None else PlannerConfig()
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    space = single_action_space(env)
    return PlannerPolicy(_fitted_model(env, model), cfg, space.low, space.high, trace=trace)


register_policy("model", _model)
register_policy("planner", _planner)
