"""worldmot.envs: the built-in MuJoCo tasks, wrappers for Gymnasium's own MuJoCo envs, scripted experts.

Importing this package registers with Gymnasium (entry points are strings, so vector-env workers can
import them):

    worldmot/Reach-v0    move the effector onto the named coloured target      (50 steps)
    worldmot/Push-v0     push the named coloured block onto the named pad        (100 steps)
    worldmot/Reacher-v5  Gymnasium's Reacher-v5 with the same contract          (50 steps)
    worldmot/Pusher-v5   Gymnasium's Pusher-v5 with the same contract           (100 steps)
    metaworld/<task>     a Meta-World v3 task, e.g. metaworld/drawer-open-v3    (125 steps; the metaworld extra)
    metaworld/MT10       the ten MT10 tasks, task = seed % 10 (MT50: all fifty) (125 steps; the metaworld extra)

Every env keeps one contract (observations, info keys, instruction, goal image, scripted expert), written
once in task_env.py (TaskEnv, the base class of both kinds); make kwargs: ``image_size`` (default 64),
``held_out_instructions`` (evaluation wordings).

Vector envs: ``make_vec(env_id, num_envs)`` below starts async workers with the "spawn" context. With
the default "fork", a worker forked after the parent process rendered anything hangs (Mesa's EGL does
not survive fork); the renderer raises a WorldmotError in that case rather than hanging.
"""
import os
import sys

# before the first `import mujoco` anywhere: a headless Linux machine has no display for GLFW. Only on Linux
# (MuJoCo refuses EGL elsewhere) and only when the user has not chosen (osmesa, glfw)
if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402


def _register(env_id: str, entry_point: str, max_episode_steps: int, **kwargs) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs)


_register("worldmot/Reach-v0", "worldmot.envs.reach:ReachEnv", 50)
_register("worldmot/Push-v0", "worldmot.envs.push:PushEnv", 100)
# Gymnasium's own envs as specs (configs/env/*.yaml, hooks in gym_hooks.py), built by worldmot.envs.make
_register("worldmot/Reacher-v5", "worldmot.envs.make:builtin_spec_env", 50, spec_name="reacher-v5")
_register("worldmot/Pusher-v5", "worldmot.envs.make:builtin_spec_env", 100, spec_name="pusher-v5")


def _register_metaworld() -> None:
    """``metaworld/<task>`` for every Meta-World v3 task and ``metaworld/MT10`` / ``metaworld/MT50``, where the
    ``metaworld`` extra is installed (found without importing it: importing Meta-World takes a second or two)."""
    import importlib.util

    from worldmot.envs.metaworld_tasks import SETS, TASKS

    if importlib.util.find_spec("metaworld") is None:
        return
    steps = 500 // 4  # Meta-World's 500 steps at the default action repeat (metaworld.py FRAME_SKIP)
    for name, tasks in [(t, (t,)) for t in TASKS] + list(SETS.items()):
        if f"metaworld/{name}" not in gym.registry:
            gym.register(id=f"metaworld/{name}", entry_point="worldmot.envs.metaworld:MetaWorldTask",
                         max_episode_steps=steps, kwargs={"tasks": tasks})


def missing_extra(env_id: str) -> str | None:
    """Why ``env_id`` is not registered where an optional extra would register it (one line), else None."""
    if env_id.startswith("metaworld/") and env_id not in gym.registry:
        from worldmot.envs.metaworld_tasks import SETS, TASKS

        name = env_id.split("/", 1)[1]
        if name in TASKS or name in SETS:
            return f"--env {env_id}: Meta-World is an optional extra: pip install -e \".[metaworld]\" (metaworld==3.1.1, which pins mujoco 3.3.0)"
    return None


_register_metaworld()


def make_vec(env_id: str, num_envs: int, vectorization_mode: str = "async", vector_kwargs: dict | None = None, **kwargs):
    """``gymnasium.make_vec`` with a "spawn" context for async workers (safe after the parent rendered)."""
    vector_kwargs = dict(vector_kwargs or {})
    if vectorization_mode == "async":
        vector_kwargs.setdefault("context", "spawn")
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, vector_kwargs=vector_kwargs, **kwargs)


TASK_IDS = ("worldmot/Reach-v0", "worldmot/Push-v0", "worldmot/Reacher-v5", "worldmot/Pusher-v5")
