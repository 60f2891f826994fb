"""The one way worldmot makes an env from a name: recording, evaluation (in the simulator and in the model) and
the demo all call :func:`make_env`.

A name is, in this order:
    worldmot/<Task>          a task that worldmot.envs registers with its own class (TaskEnv), made by it
    a spec                   a name of configs/env/ or a path to a YAML file: a TaskSpec (envs/spec.py)
    module:Id                imports ``module`` (which registers Id), then as a Gymnasium id
    a Gymnasium id           e.g. Reacher-v5: a TaskSpec with that gym_id and every other field at its default
Spec-driven envs are SpecEnv (envs/spec_env.py); ``spec_overrides`` (``key=value``) change fields of their spec.
For a built-in task they are keyword arguments of its class (:func:`class_kwargs`), e.g. ``task_set_seed=1``.
A spec-driven env is built and probed once (a reset and a step) before the env is handed out, so that a spec
that does not fit the env is one WorldmotError before anything is written.
"""
from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Sequence

import gymnasium as gym

from worldmot.config import config_dir, named_config
from worldmot.envs.spec import TaskSpec, load_spec
from worldmot.envs.spec_env import SpecEnv, probe
from worldmot.errors import WorldmotError

VECTORIZATIONS = (None, "sync", "async")


def resolve(name: str, spec_overrides: Sequence[str] = ()) -> TaskSpec | None:
    """The TaskSpec that ``name`` stands for, or None for a built-in worldmot task (made by its own class)."""
    import worldmot.envs  # noqa: F401  registers the worldmot/* ids

    if _own_class(name):
        class_kwargs(name, spec_overrides)  # checked here: a key the task's class does not take is one error
        return None
    if _is_spec_name(name):
        spec = load_spec(named_config("env", name), spec_overrides)
    else:
        _registered(name, f"--env {name!r}")
        spec = load_spec(None, spec_overrides, gym_id=name)
    _registered(spec.gym_id, f"gym_id={spec.gym_id!r}")
    return spec


# what make_env sets itself (its image_size and held_out arguments; the contract renders)
_SET_BY_MAKE_ENV = ("image_size", "held_out_instructions", "render_mode")


def class_kwargs(name: str, overrides: Sequence[str] = ()) -> dict:
    """``key=value`` settings of a built-in task as keyword arguments of its class (values parsed as YAML), e.g.
    ``task_set_seed=1`` for metaworld/* (Meta-World's other 50 positions per task: evaluation on positions the
    recording never saw); one error for a key the class does not take."""
    import inspect

    import yaml

    if not overrides:
        return {}
    entry = gym.registry[name].entry_point
    module, _, cls = entry.partition(":")
    params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    allowed = sorted(k for k in params if k not in ("self", *_SET_BY_MAKE_ENV) and params[k].kind.name != "VAR_KEYWORD")
    kwargs = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise WorldmotError(f"--env {name}: {item!r} is not a setting of this built-in task (key=value with "
                                f"a key of: {', '.join(allowed) or 'none'}; image size and held-out wordings "
                                "have their own options)")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def _own_class(name: str) -> bool:
    """Registered with an entry point of worldmot.envs: a task class that keeps the contract itself."""
    entry = gym.registry[name].entry_point if name in gym.registry else None
    return isinstance(entry, str) and entry.startswith("worldmot.envs.")


def spec_names() -> list[str]:
    """The built-in specs (configs/env/*.yaml)."""
    return sorted(p.stem for p in (config_dir() / "env").glob("*.yaml"))


def _is_spec_name(name: str) -> bool:
    path = Path(name)
    return path.suffix in (".yaml", ".yml") or path.exists() or (config_dir() / "env" / f"{name}.yaml").is_file()


def _registered(gym_id: str, what: str) -> gym.envs.registration.EnvSpec:
    """The registration of ``gym_id`` ("module:Id" imports the module first); one line where there is none."""
    module, _, env_id = gym_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise WorldmotError(f"{what}: cannot import {module!r} ({err})") from None
    if env_id not in gym.registry:
        from worldmot.envs import missing_extra

        if missing_extra(env_id):  # an id that an optional extra (Meta-World) would register
            raise WorldmotError(missing_extra(env_id))
        worldmot_ids = ", ".join(sorted(k for k in gym.registry if k.startswith("worldmot/")))
        raise WorldmotError(f"{what}: unknown Gymnasium id (worldmot's tasks: {worldmot_ids}; specs: "
                            f"{', '.join(spec_names()) or 'none'}; or a YAML spec file)")
    return gym.registry[env_id]


def max_episode_steps(name: str, spec_overrides: Sequence[str] = ()) -> int:
    """Decisions per episode of the env ``name`` (its time limit)."""
    spec = resolve(name, spec_overrides)
    if spec is None:
        return gym.spec(name).max_episode_steps or 100
    return _spec_limit(spec)


def _spec_limit(spec: TaskSpec) -> int:
    if spec.max_episode_steps:
        return spec.max_episode_steps
    registered = _registered(spec.gym_id, f"gym_id={spec.gym_id!r}").max_episode_steps
    if not registered:
        raise WorldmotError(f"gym_id={spec.gym_id!r} has no time limit: set max_episode_steps in the spec")
    return max(1, registered // spec.frame_skip)


def builtin_spec_env(spec_name: str, image_size: int | None = None, held_out_instructions: bool = False,
                     render_mode: str | None = None) -> SpecEnv:
    """The SpecEnv of the built-in spec configs/env/<spec_name>.yaml: the entry point of worldmot's spec-driven
    registrations (worldmot/Reacher-v5, worldmot/Pusher-v5; their time limit is the registration's)."""
    spec = load_spec(named_config("env", spec_name))
    return SpecEnv(spec, image_size=image_size, held_out_instructions=held_out_instructions, render_mode=render_mode)


def make_spec_env(spec: TaskSpec, limit: int, image_size: int | None, held_out: bool) -> gym.Env:
    """A SpecEnv inside Gymnasium's TimeLimit (module level: vector workers unpickle it by reference)."""
    return gym.wrappers.TimeLimit(SpecEnv(spec, image_size=image_size, held_out_instructions=held_out), limit)


def make_env(name: str, num_envs: int = 1, vectorization: str | None = None, image_size: int | None = None,
             held_out: bool = False, spec_overrides: Sequence[str] = (),
             autoreset_mode: gym.vector.AutoresetMode | None = None) -> gym.Env | gym.vector.VectorEnv:
    """The env ``name`` (see the module doc): one env (``vectorization`` None, ``num_envs`` 1) or a vector env
    of ``num_envs`` ("sync": one process; "async": "spawn" workers, safe after the parent rendered).

    ``image_size``: the camera's height and width (None: the task's default); ``held_out``: the wordings held
    out of recording; ``autoreset_mode``: the vector env's (None: Gymnasium's default)."""
    if vectorization not in VECTORIZATIONS:
        raise WorldmotError(f"vectorization={vectorization!r}: expected one of {VECTORIZATIONS}")
    if vectorization is None and num_envs != 1:
        raise WorldmotError(f"num_envs={num_envs} needs a vectorization ('sync' or 'async')")
    spec = resolve(name, spec_overrides)
    if spec is None:
        return _make_registered(name, num_envs, vectorization, image_size, held_out, autoreset_mode,
                                class_kwargs(name, spec_overrides))
    fn = functools.partial(make_spec_env, spec, _spec_limit(spec), image_size, held_out)
    first = fn()
    try:
        probe(first.unwrapped)
    except Exception:
        first.close()
        raise
    if vectorization is None:
        return first
    first.close()
    vector_kwargs = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv([fn] * num_envs, **vector_kwargs)
    return gym.vector.AsyncVectorEnv([fn] * num_envs, context="spawn", **vector_kwargs)


def _make_registered(env_id: str, num_envs: int, vectorization: str | None, image_size: int | None,
                     held_out: bool, autoreset_mode: gym.vector.AutoresetMode | None, extra: dict | None = None):
    from worldmot.envs import make_vec

    kwargs: dict = {**(extra or {}), **({"held_out_instructions": held_out} if held_out else {})}
    if image_size is not None:
        kwargs["image_size"] = image_size
    if vectorization is None:
        return gym.make(env_id, **kwargs)
    vector_kwargs = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
    if vectorization == "sync":
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", vector_kwargs=vector_kwargs,
                            **kwargs)
    return make_vec(env_id, num_envs, vector_kwargs=vector_kwargs, **kwargs)
