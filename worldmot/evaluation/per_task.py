"""Per-task, per-group and overall results of a multi-task evaluation (``--env metaworld/MT10``), in the shape of
lerobot-eval 0.4's eval_info.json (``eval_policy_all``):

    per_task   [{"task_group", "task_id", "task", "metrics": {"sum_rewards", "max_rewards", "successes",
                 "episode_ix", "pc_success"}}]     lists over the task's episodes, in episode order
    per_group  {group: {"avg_sum_reward", "avg_max_reward", "pc_success", "n_episodes"}}
    overall    {"avg_sum_reward", "avg_max_reward", "pc_success", "n_episodes", "eval_s", "eval_ep_s"}

An env is multi-task when it has ``task_cycle``: (group, task_id, task) of each task, the episode reset with
seed s playing ``task_cycle[s % len(task_cycle)]`` (the Meta-World envs have it). Any other env is one task, as
lerobot-eval reports a single env: its group the id's namespace ("worldmot" of worldmot/Reach-v0), task_id 0.
``task`` (the task's name), ``episode_ix`` and the per-task ``pc_success`` are worldmot's additions.
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import numpy as np

from worldmot.stepping import Episode


class TaskLabel(NamedTuple):
    group: str
    task_id: int
    task: str


def episode_tasks(env, env_id: str, episodes: list[Episode]) -> list[TaskLabel]:
    """The task of each episode: from its seed in a multi-task env, else the env's one task."""
    try:
        cycle = env.get_attr("task_cycle")[0]
    except AttributeError:
        cycle = None
    if cycle is None or any(ep.seed is None for ep in episodes):
        one = TaskLabel(env_id.split("/")[0] if "/" in env_id else env_id, 0, env_id)
        return [one] * len(episodes)
    return [TaskLabel(*cycle[ep.seed % len(cycle)]) for ep in episodes]


def per_task_report(rows: list[dict], labels: list[TaskLabel], aggregated: dict) -> dict:
    """``per_task``, ``per_group`` and ``overall`` from the ``per_episode`` rows and their tasks."""
    by_task: dict[TaskLabel, list[dict]] = defaultdict(list)
    for row, label in zip(rows, labels):
        by_task[label].append(row)
    per_task = [{"task_group": label.group, "task_id": label.task_id, "task": label.task,
                 "metrics": _task_metrics(task_rows)}
                for label, task_rows in sorted(by_task.items(), key=lambda item: item[0].task_id)]
    by_group: dict[str, list[dict]] = defaultdict(list)
    for row, label in zip(rows, labels):
        by_group[label.group].append(row)
    per_group = {group: _averages(group_rows) for group, group_rows in by_group.items()}
    overall = {**_averages(rows), "eval_s": aggregated["eval_s"], "eval_ep_s": aggregated["eval_ep_s"]}
    return {"per_task": per_task, "per_group": per_group, "overall": overall}


def _task_metrics(rows: list[dict]) -> dict:
    successes = [bool(r["success"]) for r in rows]
    return {"sum_rewards": [r["sum_reward"] for r in rows], "max_rewards": [r["max_reward"] for r in rows],
            "successes": successes, "episode_ix": [r["episode_ix"] for r in rows],
            "pc_success": 100.0 * float(np.mean(successes))}


def _averages(rows: list[dict]) -> dict:
    return {"avg_sum_reward": float(np.mean([r["sum_reward"] for r in rows])),
            "avg_max_reward": float(np.mean([r["max_reward"] for r in rows])),
            "pc_success": 100.0 * float(np.mean([r["success"] for r in rows])),
            "n_episodes": len(rows)}
