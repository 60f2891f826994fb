"""eval_info.json has lerobot-eval 0.4's shape for every env: per_task, per_group and overall beside
per_episode and aggregated (tools that read ``overall`` work on worldmot's output)."""
from __future__ import annotations

import json

import pytest

from worldmot.evaluation.run import evaluate


@pytest.mark.parametrize("env_id,group", [("worldmot/Reach-v0", "worldmot"), ("worldmot/Reacher-v5", "worldmot")])
def test_a_single_env_is_one_task_in_lerobot_evals_shape(tmp_path, env_id, group):
    evaluate(env_id, "scripted", tmp_path / "ev", episodes=3, seed=100_000, num_envs=2, videos=0, rrd=False)
    info = json.loads((tmp_path / "ev" / "eval_info.json").read_text())
    assert [(t["task_group"], t["task_id"], t["task"]) for t in info["per_task"]] == [(group, 0, env_id)]
    metrics = info["per_task"][0]["metrics"]
    assert metrics["episode_ix"] == [0, 1, 2]
    assert metrics["successes"] == [bool(e["success"]) for e in info["per_episode"]]
    assert set(info["per_group"]) == {group}
    overall = info["overall"]
    assert overall["n_episodes"] == 3
    assert overall["pc_success"] == pytest.approx(info["aggregated"]["pc_success"])
    assert overall["avg_sum_reward"] == pytest.approx(info["aggregated"]["avg_sum_reward"])
    assert {"eval_s", "eval_ep_s"} <= set(overall)
