"""One evaluation from start to files: env, policy, episodes in the simulator, eval_info.json, videos, .rrd.

    info = evaluate("worldmot/Reach-v0", "planner", Path("eval/reach-planner"), model=model, plan=plan)

``worldmot eval`` and ``worldmot demo`` both call it.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from worldmot.envs.make import make_env, max_episode_steps
from worldmot.errors import WorldmotError
from worldmot.evaluation.outputs import write_eval_outputs
from worldmot.evaluation.per_task import episode_tasks, per_task_report
from worldmot.evaluation.simulator import evaluate_in_simulator
from worldmot.model.world_model import WorldModel
from worldmot.planning import PlannerConfig


def evaluate(env_id: str, policy_name: str, out: Path, *, model: WorldModel | None = None,
             plan: PlannerConfig | None = None, episodes: int = 50, seed: int = 100_000, num_envs: int = 10,
             held_out: bool = False, videos: int = 2, rrd: bool = True, extra: dict | None = None,
             in_model: bool = False, judge: str = "goal", reason: bool = False, transfer: bool = False,
             spec_overrides: Sequence[str] = (), dataset: str | None = None,
             goal_tolerance: float | None = None) -> dict:
    """Run ``episodes`` seeded episodes of ``policy_name`` and write the output folder; returns eval_info.

    ``in_model``: in the world model's imagination instead of the simulator (the same seeded starts; see
    in_model.py); ``model`` is then the world model every policy runs in, and ``judge`` how it judges success
    (``goal_tolerance``: judge "goal"'s, None: the model's calibrated one, else the default).
    ``reason``: the model policy writes its reasoning before its actions (ModelPolicy). ``transfer``: run a
    model on an env or features other than those it was trained on (otherwise a one-line error).
    ``spec_overrides``: ``key=value`` fields of a spec-driven env's spec. An env without a goal image (a spec
    without a goal recipe) is planned with the progress cost and judged in the model by its success token.
    ``dataset``: a LeRobot dataset (folder or Hub id) whose episodes give the starts instead of the simulator
    (``env_id`` then only names the run; in the model only: DatasetStarts), the goal its episodes' last frames."""
    if in_model and model is None:
        raise WorldmotError("--in-model needs --checkpoint RUN: the world model to evaluate in")
    if dataset is not None and not in_model:
        raise WorldmotError(f"--dataset {dataset}: a dataset has no simulator; evaluate in the model (--in-model)")
    if dataset is not None:
        from worldmot.evaluation.dataset_starts import DatasetStarts

        starts = DatasetStarts(model, dataset, min(num_envs, episodes))
        return _evaluate_in(starts, starts.max_steps, env_id, policy_name, out, model, plan, episodes, seed,
                            held_out, videos, rrd, {**(extra or {}), "dataset": dataset}, judge, reason,
                            goal_tolerance=goal_tolerance)
    # sync: one process, the policy batches over the sub-envs and headless rendering is cheap
    env = make_env(env_id, min(num_envs, episodes), "sync", held_out=held_out, spec_overrides=spec_overrides,
                   image_size=model.cfg.sequence.image_size if model is not None else None)
    has_goal = _has_goal_image(env)
    if not has_goal:
        plan, judge = _without_goal_image(env_id, plan, judge, in_model)
    if model is not None and not transfer:
        from worldmot.evaluation.trained_on import check_trained_on

        try:
            check_trained_on(getattr(model, "trained_on", None), env_id, env, "--checkpoint")
        except WorldmotError:
            env.close()
            raise
    return _evaluate_in(env, max_episode_steps(env_id, spec_overrides) if in_model else None, env_id, policy_name,
                        out, model, plan, episodes, seed, held_out, videos, rrd, extra, judge, reason, has_goal,
                        goal_tolerance)


def _evaluate_in(env, imagined_steps: int | None, env_id: str, policy_name: str, out: Path, model, plan, episodes: int,
                 seed: int, held_out: bool, videos: int, rrd: bool, extra: dict | None, judge: str, reason: bool,
                 has_goal: bool = True, goal_tolerance: float | None = None) -> dict:
    """The episodes in ``env``, inside the model for ``imagined_steps`` steps where given; the output folder."""
    from worldmot.policies import make_policy

    in_model = imagined_steps is not None
    judged = {}  # how the model judged success, in the model only
    if in_model:
        from worldmot.evaluation.in_model import ImaginedVectorEnv

        env = ImaginedVectorEnv(model, env, max_steps=imagined_steps, judge=judge, goal_tolerance=goal_tolerance)
        judged = {"judge": judge, **({"goal_tolerance": env.goal_tolerance} if judge == "goal" else {})}
    try:
        policy = make_policy(policy_name, env, model=model, plan=plan, seed=seed, trace=rrd, reason=reason)
        # after the policy's checks (a model that does not fit the env writes nothing), before the episodes run
        Path(out).mkdir(parents=True, exist_ok=True)
        # the goal image is in the recording whatever the cost; a planner with cost=goal also plans toward it
        result = evaluate_in_simulator(env, env_id, policy, policy_name, episodes, seed,
                                       goal_frame=has_goal and (rrd or (plan is not None and plan.cost == "goal")),
                                       held_out=held_out)
        fps = int(env.metadata.get("render_fps", 10) or 10)
        labels = episode_tasks(env, env_id, result.episodes)  # per_task, per_group, overall as lerobot-eval
    finally:
        env.close()
    extra = {**(extra or {}), "seed": seed, "in_model": in_model, **judged,
             **({"reason": reason} if policy_name == "model" else {})}
    if plan is not None and policy_name == "planner":
        extra["plan"] = asdict(plan)
    extra.update(per_task_report(result.per_episode(), labels, result.aggregated()))
    stride = model.cfg.sequence.chunk if model is not None else 1
    return write_eval_outputs(out, result, videos=videos, rrd=rrd, fps=fps, extra=extra, imagined_stride=stride)


def _has_goal_image(env) -> bool:
    """Whether the env renders goal images (a spec says so in ``has_goal_image``; worldmot's tasks all do)."""
    try:
        return bool(env.get_attr("has_goal_image")[0])
    except AttributeError:
        return True


def _without_goal_image(env_id: str, plan: PlannerConfig | None, judge: str, in_model: bool):
    """(plan, judge) for an env without a goal image: the progress cost and the success token, said once each."""
    if plan is not None and plan.cost == "goal":
        print(f"note: {env_id} has no goal image: the planner uses the progress cost (plan.cost=progress)",
              file=sys.stderr)
        plan = dataclasses.replace(plan, cost="progress")
    if in_model and judge == "goal":
        print(f"note: {env_id} has no goal image: the model judges success by its <success> token (--judge token)",
              file=sys.stderr)
        judge = "token"
    return plan, judge


def summary_line(info: dict) -> str:
    """``worldmot/Reach-v0 planner: success 92.0% over 50 episodes, ...`` from an eval_info dict."""
    agg = info["aggregated"]
    where = " (in the model)" if info.get("in_model") else ""
    line = (f"{info['env']} {info['policy']}{where}: success {agg['pc_success']:.1f}% over {agg['n_episodes']} episodes, "
            f"avg sum reward {agg['avg_sum_reward']:.2f}, {agg['eval_ep_s']:.2f} s/episode")
    if "plan_s_median" in agg:
        line += f", {agg['plan_s_median']:.3f} s per replan (median)"
    return line
