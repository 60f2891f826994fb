"""Meta-World v3 envs (the metaworld extra): the task table, the contract, the experts, MT10's task per seed,
recording and the per-task evaluation report. The tests that need Meta-World are skipped without it."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import worldmot.envs as envs
from worldmot.envs.experts import expert_of
from worldmot.envs.metaworld_tasks import GROUPS, INSTRUCTIONS, MT10, TASKS, group_of
from worldmot.evaluation.per_task import TaskLabel, per_task_report

SKIP_REASON = "Meta-World is an optional extra: pip install -e '.[metaworld]'"


@pytest.fixture(scope="module")
def metaworld():
    return pytest.importorskip("metaworld", reason=SKIP_REASON)


@pytest.fixture(scope="module")
def reach(metaworld):
    env = gym.make("metaworld/reach-v3", image_size=32)
    yield env
    env.close()


def test_task_table_wordings_and_groups():
    for task, (train, held) in INSTRUCTIONS.items():
        assert len(train) >= 2 and held and not set(train) & set(held), task
    every = [w for both in INSTRUCTIONS.values() for ws in both for w in ws]
    assert len(set(every)) == len(every)  # a wording names its task (the expert in the model relies on it)
    assert sorted(t for ts in GROUPS.values() for t in ts) == sorted(TASKS)
    assert set(MT10) <= set(TASKS) and group_of("peg-insert-side-v3") == "medium"


def test_the_expert_takes_the_task_from_the_instruction_before_the_state_index():
    """In the world model the task index is read off imagined frames (here 57.3: no task); the wording is exact."""
    from worldmot.envs.metaworld_expert import RAW, task_of
    from worldmot.errors import WorldmotError

    state = np.zeros(RAW + 1)
    state[RAW] = TASKS.index("drawer-open-v3")
    assert task_of(state) == "drawer-open-v3"
    state[RAW] = 57.3
    wording = INSTRUCTIONS["window-close-v3"][1][0]  # a held-out wording names its task as well
    assert task_of(state, wording) == "window-close-v3"
    with pytest.raises(WorldmotError, match=r"environment_state\[39\]=57.30: expected the index of a Meta-World task"):
        task_of(state, "do something")


def test_missing_extra_is_one_line_naming_it():
    message = envs.missing_extra("metaworld/MT10")
    if "metaworld/MT10" in gym.registry:
        assert message is None
    else:
        assert ".[metaworld]" in message and "\n" not in message
    assert envs.missing_extra("metaworld/no-such-task") is None


def test_per_task_report_has_lerobot_eval_shape():
    rows = [{"episode_ix": i, "sum_reward": float(i), "max_reward": 1.0, "success": i % 2 == 0} for i in range(4)]
    labels = [TaskLabel("easy", 0, "reach-v3"), TaskLabel("hard", 1, "push-v3")] * 2
    report = per_task_report(rows, labels, {"eval_s": 2.0, "eval_ep_s": 0.5})
    assert [t["task"] for t in report["per_task"]] == ["reach-v3", "push-v3"]
    assert report["per_task"][0]["metrics"]["successes"] == [True, True]
    assert report["per_task"][1]["metrics"]["episode_ix"] == [1, 3]
    assert report["per_group"]["hard"]["pc_success"] == 0.0 and report["per_group"]["easy"]["n_episodes"] == 2
    assert report["overall"]["pc_success"] == 50.0 and report["overall"]["eval_s"] == 2.0


def test_table_is_metaworlds_own(metaworld):
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, MT10_V3
    from metaworld.policies import ENV_POLICY_MAP

    assert TASKS == tuple(ALL_V3_ENVIRONMENTS) and MT10 == tuple(MT10_V3)
    assert set(ENV_POLICY_MAP) == set(TASKS)


def test_contract_and_seeded_reset(reach):
    obs, info = reach.reset(seed=3)
    assert reach.observation_space.contains(obs) and info["task"] == "reach-v3"
    assert info["instruction"] in INSTRUCTIONS["reach-v3"][0]
    again, _ = reach.reset(seed=3)
    np.testing.assert_array_equal(obs["environment_state"], again["environment_state"])
    other, _ = reach.reset(seed=4)
    assert not np.array_equal(obs["environment_state"][36:39], other["environment_state"][36:39])  # goal moved
    assert obs["environment_state"][-1] == TASKS.index("reach-v3")
    assert reach.metadata["render_fps"] == 20 and reach.spec.max_episode_steps == 125


def test_expert_succeeds_and_goal_image_leaves_the_state(reach):
    obs, info = reach.reset(seed=5)
    before = reach.unwrapped.data.qpos.copy()
    goal = reach.unwrapped.render_goal()
    assert goal.shape == (32, 32, 3) and not np.array_equal(goal, obs["pixels"]["top"])
    np.testing.assert_array_equal(reach.unwrapped.data.qpos, before)
    expert = expert_of(reach)
    for _ in range(60):
        action, subtask = expert(obs["agent_pos"][None], obs["environment_state"][None], [info["instruction"]])
        obs, _, terminated, _, info = reach.step(action[0])
        if terminated:
            break
    assert info["is_success"] and subtask[0].startswith("object ")
    assert np.all((obs["keypoints"] >= 0) & (obs["keypoints"] <= 1))


def test_mt10_plays_task_seed_mod_10_with_held_out_wordings(metaworld):
    env = gym.make("metaworld/MT10", pixels=False, held_out_instructions=True)
    try:
        for seed in (1, 13):
            _, info = env.reset(seed=seed)
            assert info["task"] == MT10[seed % 10] and info["instruction"] in INSTRUCTIONS[MT10[seed % 10]][1]
        assert env.unwrapped.task_cycle[3] == ("easy", 3, "door-open-v3")
    finally:
        env.close()


def test_record_mt10_two_tasks_in_one_dataset(metaworld, tmp_path):
    from worldmot.recording import record

    result = record("metaworld/MT10", "scripted", 2, tmp_path / "ds", image_size=32, progress=False)
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert result.total_episodes == 2 and info["robot_type"] == "metaworld/MT10"
    assert "expert_action" in info["features"] and info["features"]["observation.environment_state"]["shape"] == [40]


def test_built_in_task_settings_are_its_class_keywords_checked_first():
    from worldmot.envs.make import class_kwargs, make_env
    from worldmot.errors import WorldmotError

    with pytest.raises(WorldmotError, match="'no_such=1' is not a setting of this built-in task"):
        make_env("worldmot/Reach-v0", spec_overrides=["no_such=1"])
    with pytest.raises(WorldmotError, match="their own options"):
        class_kwargs("worldmot/Reach-v0", ["image_size=32"])


def test_task_set_seed_gives_positions_the_recording_never_saw(metaworld):
    """``--env-set task_set_seed=1`` (evaluation) draws from Meta-World's other 50 positions per task."""
    from worldmot.envs.make import make_env

    def nearest(env, seeds, every):  # each episode's goal: its distance to the nearest of ``every``
        goals = np.stack([env.reset(seed=s)[0]["environment_state"][36:39] for s in seeds])
        return np.linalg.norm(goals[:, None] - every[None], axis=-1).min(axis=1)

    recorded = make_env("metaworld/reach-v3", image_size=16)
    unseen = make_env("metaworld/reach-v3", image_size=16, spec_overrides=["task_set_seed=1"])
    vec = make_env("metaworld/reach-v3", 2, "sync", image_size=16, spec_overrides=["task_set_seed=1"])
    try:
        assert recorded.unwrapped.task_set_seed == 0 and unseen.unwrapped.task_set_seed == 1
        assert vec.get_attr("task_set_seed") == (1, 1)
        every_recorded = np.stack(_all_goals(recorded.unwrapped))
        assert len(every_recorded) == 50
        assert nearest(recorded, range(20), every_recorded).max() < 1e-5  # recording: seeds 0+, task set 0
        assert nearest(unseen, range(100_000, 100_020), every_recorded).min() > 1e-3  # none of those 50
    finally:
        for env in (recorded, unseen, vec):
            env.close()


def _all_goals(env):
    """The goal of each of the 50 positions of the env's task set."""
    sim = env._sim
    out = []
    for task in sim.tasks:
        sim.env.set_task(task)
        out.append(sim.env.reset()[0][36:39])
    return out
