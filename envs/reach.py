"""Reach: move the effector onto the one of three coloured targets that the instruction names.

environment_state (6,): [named target xy, other target xy, other target xy] (the others in scene order).
Success: effector centre within ``SUCCESS_DISTANCE`` of the named target's centre.
Progress: 1 at success, falling linearly with the distance to 0 at ``SUCCESS_DISTANCE + PROGRESS_SCALE``.
"""
from __future__ import annotations

import numpy as np

from worldmot.envs.instructions import COLOURS, sample_instruction
from worldmot.envs.tabletop import WORKSPACE, TabletopEnv, effector_halo, linear_progress, sample_separated

N_TARGETS = 3
TARGET_RADIUS = 0.05
SUCCESS_DISTANCE = 0.03
PROGRESS_SCALE = 0.6


class ReachEnv(TabletopEnv):
    task_name = "reach"
    env_state_dim = 2 * N_TARGETS
    named_objects = 1  # the named target
    max_step = 0.03  # 2 pixels a step at 64x64; the farthest start (~0.95 m) takes 32 steps

    def _effector_visual(self) -> str:
        return effector_halo()

    def _objects_xml(self) -> str:
        return "".join(
            f'<body name="target{i}" pos="0 0 0.002">'
            f'<geom name="target{i}" type="cylinder" size="{TARGET_RADIUS} 0.001" rgba="1 1 1 1"/></body>\n'
            for i in range(N_TARGETS)
        )

    def _sample_episode(self, rng: np.random.Generator) -> None:
        names = list(COLOURS)
        colours = [names[i] for i in rng.choice(len(names), N_TARGETS, replace=False)]
        positions = sample_separated(rng, N_TARGETS, -0.35, 0.35, min_dist=0.18)
        for i, (colour, xy) in enumerate(zip(colours, positions)):
            self.model.body_pos[self.model.body(f"target{i}").id, :2] = xy
            self._set_rgba(f"target{i}", COLOURS[colour])
        self.named = int(rng.integers(N_TARGETS))
        self.colours = colours
        self.targets = np.array(positions)
        start = sample_separated(rng, 1, -WORKSPACE + 0.05, WORKSPACE - 0.05, 0.15, avoid=[positions[self.named]])[0]
        self.data.mocap_pos[0, :2] = start
        self.instruction = sample_instruction(rng, "reach", self.held_out_instructions, target=colours[self.named])

    def _environment_state(self) -> np.ndarray:
        order = [self.named] + [i for i in range(N_TARGETS) if i != self.named]
        return self.targets[order].reshape(-1)

    def _progress(self) -> tuple[float, bool]:
        return self.progress_toward(self.named)

    def progress_toward(self, target: int) -> tuple[float, bool]:
        """(progress, success) as if ``target`` (an index into the scene's targets) were the named one."""
        d = float(np.linalg.norm(self.effector_xy - self.targets[target]))
        success = d <= SUCCESS_DISTANCE
        return (1.0 if success else linear_progress(d, SUCCESS_DISTANCE, PROGRESS_SCALE)), success

    def _set_goal_configuration(self) -> None:
        self.data.mocap_pos[0, :2] = self.targets[self.named]
