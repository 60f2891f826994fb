"""Issue 30.5: episode i of a recording is a function of seed + i alone, exploration noise and random actions
included, whatever the number of workers and wherever the recording was interrupted and resumed."""
from __future__ import annotations

import numpy as np
import pytest

from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.recording import record

ENV = "worldmot/Reach-v0"
NOISE = {"action_noise": 0.5, "noise_duty": 0.5}


def _values(root) -> list[dict]:
    r = LeRobotDatasetReader(root)
    return [r.episode_table(ep, ["action", "observation.state", "next.reward"]) for ep in range(r.num_episodes)]


@pytest.mark.parametrize("policy,kwargs", [("scripted", NOISE), ("random", None)])
def test_two_workers_and_a_resume_give_the_single_env_episodes(tmp_path, policy, kwargs):
    one = dict(policy_name=policy, seed=5, image_size=16, progress=False, policy_kwargs=kwargs)
    record(ENV, episodes=4, out=tmp_path / "single", **one)
    record(ENV, episodes=1, out=tmp_path / "vec", num_envs=2, **one)
    record(ENV, episodes=4, out=tmp_path / "vec", num_envs=2, resume=True, **one)
    single, vec = _values(tmp_path / "single"), _values(tmp_path / "vec")
    assert len(single) == len(vec) == 4
    for ep, (a, b) in enumerate(zip(single, vec)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"episode {ep} {key}")
