"""Meta-World's own scripted policies as a worldmot expert (the ``"metaworld"`` entry of experts.EXPERTS).

The env's ``environment_state`` is Meta-World's raw 39-value observation followed by the task's index in
metaworld_tasks.TASKS (metaworld.py), so one expert serves every task, and a batch may mix tasks (MT10).
The instruction names the task too (every wording belongs to one task) and is taken first: in the world
model the state is read off imagined frames, where the index is only approximately right.
``metaworld`` is imported on the first call, not at import: worldmot.envs.experts imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worldmot.envs.metaworld_tasks import TASKS, task_of_wording
from worldmot.errors import WorldmotError
from worldmot.reasoning import format_position

RAW = 39  # Meta-World's observation: hand xyz, gripper, two objects' pose (14), the previous frame's 18, goal xyz


def task_of(environment_state: np.ndarray, instruction: str = "") -> str:
    """The Meta-World task of ``instruction`` where it is one of the tasks' wordings, else of the task index
    that ends ``environment_state``."""
    task = task_of_wording(instruction)
    if task is not None:
        return task
    index = int(round(float(environment_state[RAW])))
    if not 0 <= index < len(TASKS):
        raise WorldmotError(f"environment_state[{RAW}]={environment_state[RAW]:.2f}: expected the index of a "
                            f"Meta-World task (0-{len(TASKS) - 1}), or an instruction of one")
    return TASKS[index]


@dataclass
class MetaWorldExpert:
    """``metaworld.policies.Sawyer<Task>V3Policy().get_action(raw observation)`` per row; the subtask says
    where the object and the goal are ("object +05,+62 goal -03,+81", table xy in cm)."""

    _policies: dict = field(default_factory=dict, repr=False)

    def policy(self, task: str):
        if task not in self._policies:
            from metaworld.policies import ENV_POLICY_MAP

            self._policies[task] = ENV_POLICY_MAP[task]()
        return self._policies[task]

    def __call__(self, agent_pos, environment_state, tasks):
        actions, subtasks = [], []
        for s, instruction in zip(np.asarray(environment_state, np.float64), tasks, strict=True):
            raw = s[:RAW]
            task = task_of(s, instruction)
            actions.append(np.clip(self.policy(task).get_action(raw), -1.0, 1.0).astype(np.float32))
            subtasks.append(f"object {format_position(raw[4:6])} goal {format_position(raw[36:38])}")
        return np.stack(actions), subtasks
