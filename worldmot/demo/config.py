"""What the demo runs: its settings (DemoConfig) and the training and planner settings they resolve to."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worldmot.errors import WorldmotError

POLICIES = ("random", "scripted", "model", "planner")


@dataclass
class DemoConfig:
    env: str = "worldmot/Reach-v0"  # any name worldmot.envs.make resolves, with a scripted expert
    env_overrides: list[str] = field(default_factory=list)  # key=value fields of a spec-driven env's spec
    episodes: int = 400  # recorded episodes
    action_noise: float = 0.5  # the expert's exploration noise (see ScriptedPolicy)
    noise_duty: float = 0.5  # ... on in bursts for half the steps
    num_envs: int = 2  # recording workers
    train: str = "tiny"  # a name in configs/train/ or a YAML file
    train_overrides: list[str] = field(default_factory=list)
    eval_episodes: int = 50  # per policy (unseen seeds)
    planner_episodes: int = 10  # the planner is the slow one: ~0.4 s per replanning step per env on 2 cores
    # the planner prices where the model places the named objects and the effector on its imagined frames
    # against the goal image (configs/plan/objects.yaml); the model learns those positions from the recorded
    # keypoints
    plan: str = ""  # a name in configs/plan/ or a YAML file; empty: the env's (plan_name)
    plan_overrides: list[str] = field(default_factory=list)
    eval_seed: int = 100_000
    eval_envs: int = 10


def train_settings(cfg: DemoConfig, out: Path):
    """The training run's TrainConfig: cfg.train with the demo's data and run folders and cfg.train_overrides."""
    from worldmot.training.settings import load_train_config

    return load_train_config([cfg.train, f"data.root={out / 'data'}", f"run_dir={out / 'run'}", *cfg.train_overrides])


def plan_name(cfg: DemoConfig) -> str:
    """The planner's settings: cfg.plan, else Push's pushing prior for Push and positions alone otherwise."""
    return cfg.plan or ("push" if cfg.env == "worldmot/Push-v0" else "objects")


def plan_settings(cfg: DemoConfig):
    """The PlannerConfig the demo plans with; a one-line error for a plan that is not there or does not load."""
    from worldmot.config import load_config, named_config
    from worldmot.planning import PlannerConfig

    name = plan_name(cfg)
    try:
        path = named_config("plan", name)
    except WorldmotError as err:
        raise WorldmotError(f"--plan {name}: {err}") from None
    return load_config(PlannerConfig, [path], cfg.plan_overrides)
