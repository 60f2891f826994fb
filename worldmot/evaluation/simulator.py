"""Evaluate a policy in the simulator: batches of seeded episodes, LeRobot-shaped ``eval_info.json``.

    env = make_env(env_id, num_envs=8, vectorization="sync")          # worldmot.envs.make
    result = evaluate_in_simulator(env, env_id, policy, "planner", episodes=50, seed=1000)
    write_eval_outputs(out_dir, result, videos=2, rrd=True)

Episode i is reset with seed + i (sub-env j of a batch starting at episode i gets seed + i + j, which is
how Gymnasium seeds vector envs), so a run is repeatable and unseen seeds are chosen by ``seed``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldmot.io import atomic_write
from worldmot.policies.base import Policy
from worldmot.stepping import Episode, collect_episodes


@dataclass
class EvalResult:
    env_id: str
    policy: str
    episodes: list[Episode]
    eval_s: float
    plan_seconds: list[float] = field(default_factory=list)
    held_out_instructions: bool = False

    def per_episode(self) -> list[dict]:
        return [{"episode_ix": i, "sum_reward": float(ep.rewards.sum()), "max_reward": float(ep.rewards.max()),
                 "success": ep.success, "seed": ep.seed, "steps": len(ep), "instruction": ep.instruction}
                for i, ep in enumerate(self.episodes)]

    def aggregated(self) -> dict:
        rows = self.per_episode()
        agg = {"avg_sum_reward": float(np.mean([r["sum_reward"] for r in rows])),
               "avg_max_reward": float(np.mean([r["max_reward"] for r in rows])),
               "pc_success": 100.0 * float(np.mean([r["success"] for r in rows])),
               "n_episodes": len(rows),
               "eval_s": self.eval_s,
               "eval_ep_s": self.eval_s / max(1, len(rows))}
        if self.plan_seconds:
            agg["plan_s_median"] = float(np.median(self.plan_seconds))
            agg["plan_s_p90"] = float(np.percentile(self.plan_seconds, 90))
        return agg

    def info(self) -> dict:
        return {"env": self.env_id, "policy": self.policy, "held_out_instructions": self.held_out_instructions,
                "per_episode": self.per_episode(), "aggregated": self.aggregated()}


def evaluate_in_simulator(env, env_id: str, policy: Policy, policy_name: str, episodes: int, seed: int,
                          goal_frame: bool = False, held_out: bool = False) -> EvalResult:
    """Run ``episodes`` episodes in batches of ``env.num_envs`` (the last batch is cut to size)."""
    done: list[Episode] = []
    t0 = time.perf_counter()
    with tqdm(total=episodes, desc=f"eval {policy_name}", unit="ep", dynamic_ncols=True) as bar:
        while len(done) < episodes:
            batch = collect_episodes(env, policy, seed=seed + len(done), goal_frame=goal_frame)
            _attach_plans(batch, getattr(policy, "traces", None))
            take = batch[: episodes - len(done)]
            done.extend(take)
            bar.update(len(take))
            bar.set_postfix(success=f"{np.mean([e.success for e in done]):.0%}")
    plan_seconds = list(getattr(policy, "plan_seconds", []))
    return EvalResult(env_id, policy_name, done, time.perf_counter() - t0, plan_seconds, held_out)


def _attach_plans(batch: list[Episode], traces) -> None:
    """A planner's traces of one batch -> ``episode.extra["plans"]``: {step: what it planned there}."""
    if not traces:
        return
    for j, ep in enumerate(batch):
        ep.extra["plans"] = {tr.step: tr.for_env(j) for tr in traces if tr.step < len(ep)}


def write_json_atomic(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
