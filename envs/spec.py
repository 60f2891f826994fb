"""A task spec: any registered Gymnasium env with the contract of the built-in tasks, from YAML and no code.

    spec = load_spec("configs/env/my_task.yaml", overrides=["image_size=32"])   # or load_spec(None, ...)
    env = SpecEnv(spec)                                                           # envs/spec_env.py

Specs are typed dataclasses filled with OmegaConf like every other config (worldmot/config.py): a name of the
built-in ones (configs/env/<name>.yaml), a YAML path, or a plain Gymnasium id (then every field keeps its
default); ``key=value`` overrides come last. Field by field, see :class:`TaskSpec`.

Sources (``state``, ``environment_state``): each entry picks a flat vector, concatenated in the stated order:
    obs                  the whole observation, flattened (gymnasium.spaces.flatten; Dict keys in their order)
    obs.KEY              one key of a Dict observation (nested keys: obs.KEY.SUB)
    qpos / qvel          MuJoCo envs: the generalised positions / velocities
    body:NAME / site:NAME  MuJoCo envs: the world position (3,) of a body / site
and any of them may end in a slice, ``[a:b]`` (Python's rules, negative indices included).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from worldmot.config import ConfigError, check_fields, load_config, AT_LEAST_1

SOURCE = re.compile(r"^(?P<kind>obs|qpos|qvel|body|site)(?P<name>(?:\.[^\[\]]+|:[^\[\]]+)?)(?:\[(?P<slice>-?\d*:?-?\d*)\])?$")


@dataclass
class CameraSpec:
    """Where the frames come from.

    ``source``: "render" (the inner env's own ``render()`` in rgb_array mode, center-cropped and resized to
    image_size), "mujoco" (worldmot's fast renderer on the env's MuJoCo model: the model camera ``name``, or
    with no name a free camera at lookat/distance/azimuth/elevation), or "auto" (mujoco for MuJoCo envs,
    else render)."""

    source: str = "auto"
    name: str = ""
    lookat: Optional[list[float]] = None  # None: the model's centre (mjModel.stat.center)
    distance: float = 0.0  # 0: 1.5 x the model's extent
    azimuth: float = 90.0
    elevation: float = -45.0
    hidden_groups: list[int] = field(default_factory=list)  # MuJoCo geom groups not drawn


@dataclass
class GoalSpec:
    """How to render the goal image (MuJoCo envs): the state is moved into the episode's goal configuration,
    rendered and restored. Neither field set: no goal image (the planner then uses its progress cost)."""

    # "DST=SRC" qpos slices copied within qpos, e.g. "-4:-2=-2:" puts an object's slide joints at the goal's
    qpos: list[str] = field(default_factory=list)
    hook: str = ""  # "module:function", called as function(env) to move env.data into the goal configuration


@dataclass
class TaskSpec:
    """Everything worldmot needs to know about an env that it cannot ask the env."""

    gym_id: str = ""  # a registered Gymnasium id, or "module:Id" (the module registers it)
    make_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    camera: CameraSpec = field(default_factory=CameraSpec)
    image_size: int = 64
    frame_skip: int = 1  # each action is repeated this many times (one frame per decision)
    render_fps: int = 0  # the control rate recorded as fps; 0: 1 / (the env's dt x frame_skip)
    max_episode_steps: int = 0  # in decisions; 0: the Gymnasium registration's (divided by frame_skip)
    instructions: list[str] = field(default_factory=lambda: ["solve the task"])
    held_out_instructions: list[str] = field(default_factory=list)  # evaluation wordings; empty: instructions
    # an info key holding the success flag ("is_success", "success"); "auto": the first of those two that
    # the env's info has, else never successful; a "module:function" hook (env) -> (progress, success)
    # replaces both success and progress
    success: str = "auto"
    # "": 1 at success, else 0; "info:KEY": an info value in [0, 1]; "reward": the env's reward, normalised
    # with reward_range to [0, 1]
    progress: str = ""
    reward_range: list[float] = field(default_factory=lambda: [-1.0, 0.0])
    state: list[str] = field(default_factory=lambda: ["obs"])  # agent_pos (sources, see the module doc)
    environment_state: list[str] = field(default_factory=list)  # privileged positions; may be empty
    keypoints: list[str] = field(default_factory=list)  # MuJoCo body or site names ("site:NAME"), objects first
    goal: GoalSpec = field(default_factory=GoalSpec)
    terminate_on_success: bool = True
    expert: str = ""  # a scripted expert of worldmot.envs.experts (--policy scripted); "": none
    expert_kwargs: dict[str, Any] = field(default_factory=dict)
    setup_hook: str = ""  # "module:function", called as function(env) once the inner env is made (e.g. visuals)

    def check(self, source: str = "spec") -> None:
        """A one-line ConfigError naming the first field that no env could be built with."""
        if not self.gym_id:
            raise ConfigError(f"{source}: gym_id is required (a registered Gymnasium id)")
        check_fields(self, f"{source}: ", {"image_size": AT_LEAST_1, "frame_skip": AT_LEAST_1,
                                           "render_fps": (lambda v: v >= 0, ">= 0"),
                                           "max_episode_steps": (lambda v: v >= 0, ">= 0")})
        if self.camera.source not in ("auto", "render", "mujoco"):
            raise ConfigError(f"{source}: camera.source={self.camera.source!r}: expected auto, render or mujoco")
        if not self.instructions:
            raise ConfigError(f"{source}: instructions is empty (expected at least one wording)")
        if not (self.progress in ("", "reward") or self.progress.startswith("info:")):
            raise ConfigError(f"{source}: progress={self.progress!r}: expected '', 'reward' or 'info:KEY'")
        if len(self.reward_range) != 2 or self.reward_range[0] >= self.reward_range[1]:
            raise ConfigError(f"{source}: reward_range={list(self.reward_range)}: expected [low, high], low < high")
        for key in ("state", "environment_state"):
            for entry in getattr(self, key):
                if not SOURCE.match(entry):
                    raise ConfigError(f"{source}: {key} entry {entry!r}: expected obs, obs.KEY, qpos, qvel, "
                                      "body:NAME or site:NAME, optionally sliced [a:b]")
        if not self.state:
            raise ConfigError(f"{source}: state is empty (expected at least one source, e.g. obs)")
        for recipe in self.goal.qpos:
            if recipe.count("=") != 1:
                raise ConfigError(f"{source}: goal.qpos entry {recipe!r}: expected DST=SRC slices, e.g. -4:-2=-2:")


def load_spec(path: str | Path | None, overrides: Sequence[str] = (), gym_id: str = "") -> TaskSpec:
    """The spec of a YAML file (None: the defaults) with ``gym_id`` set where given and ``key=value``
    overrides applied last; checked."""
    files = [path] if path is not None else []
    spec = load_config(TaskSpec, files, [*([f"gym_id={gym_id}"] if gym_id else []), *overrides])
    spec.check(str(path) if path is not None else f"--env {gym_id}")
    return spec


def parse_slice(text: str | None) -> slice:
    """"a:b" -> slice(a, b); "i" -> slice(i, i + 1) (one element, still a vector); None -> everything."""
    if not text:
        return slice(None)
    if ":" not in text:
        i = int(text)
        return slice(i, i + 1 if i != -1 else None)
    a, b = text.split(":")
    return slice(int(a) if a else None, int(b) if b else None)
