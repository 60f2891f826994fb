"""Push: push the named coloured block (of two) onto the named coloured pad (of two).

Blocks are drawn as squares, pads as larger flat discs.
Blocks slide in the plane (two slide joints each, damped, no rotation); they collide with the effector and
with each other through frictionless sphere contacts (collision shapes hidden, square blocks drawn).

environment_state (8,): [named block xy, named pad xy, other block xy, other pad xy].
Success: named block centre within ``SUCCESS_DISTANCE`` of the named pad's centre.
Progress: 1 at success, else 0.2 * (effector close to the block) + 0.8 * (block close to the pad), each
term linear in its distance, so it grows while the effector approaches and while the block moves.
"""
from __future__ import annotations

import numpy as np

from worldmot.envs.instructions import COLOURS, sample_instruction
from worldmot.envs.tabletop import (EFFECTOR_RADIUS, EFFECTOR_Z, WORKSPACE, TabletopEnv, effector_halo, linear_progress,
                                    sample_separated)

BLOCK_HALF = 0.045  # drawn square
BLOCK_RADIUS = 0.05  # collision sphere
PAD_RADIUS = 0.075  # pads are discs, blocks squares: told apart by shape as well as size
SUCCESS_DISTANCE = 0.04
CONTACT_DISTANCE = BLOCK_RADIUS + EFFECTOR_RADIUS
BLOCK_RANGE = 0.42


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


class PushEnv(TabletopEnv):
    task_name = "push"
    env_state_dim = 8
    named_objects = 2  # the named block and the named pad
    max_step = 0.03  # 2 pixels a step at 64x64

    def _effector_contact(self) -> str:
        return 'contype="1" conaffinity="1"'

    def _effector_visual(self) -> str:
        return effector_halo()

    def _objects_xml(self) -> str:
        parts = []
        for i in range(2):
            parts.append(
                f'<body name="pad{i}" pos="0 0 0.0015"><geom name="pad{i}" type="cylinder" size="{PAD_RADIUS} 0.0005"/></body>\n'
            )
        for i in range(2):
            parts.append(
                f'<body name="block{i}" pos="0 0 {EFFECTOR_Z}">'
                f'<inertial pos="0 0 0" mass="0.2" diaginertia="1e-3 1e-3 1e-3"/>'
                f'<joint name="block{i}_x" type="slide" axis="1 0 0" damping="4" limited="true" range="-{BLOCK_RANGE} {BLOCK_RANGE}"/>'
                f'<joint name="block{i}_y" type="slide" axis="0 1 0" damping="4" limited="true" range="-{BLOCK_RANGE} {BLOCK_RANGE}"/>'
                f'<geom name="block{i}_collision" type="sphere" size="{BLOCK_RADIUS}" group="3" contype="1" conaffinity="1"/>'
                f'<geom name="block{i}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}"/></body>\n'
            )
        return "".join(parts)

    def _sample_episode(self, rng: np.random.Generator) -> None:
        names = list(COLOURS)
        colours = [names[i] for i in rng.choice(len(names), 4, replace=False)]
        self.block_colours, self.pad_colours = colours[:2], colours[2:]
        self.named_block, self.named_pad = int(rng.integers(2)), int(rng.integers(2))
        for _ in range(1000):
            blocks = sample_separated(rng, 2, -0.25, 0.25, min_dist=0.2)
            pads = sample_separated(rng, 2, -0.3, 0.3, min_dist=0.2, avoid=blocks)
            b, g, other = blocks[self.named_block], pads[self.named_pad], blocks[1 - self.named_block]
            u = (g - b) / np.linalg.norm(g - b)
            # the other block must not sit on the named block's way to its pad (nor behind it)
            if _segment_distance(other, b - 0.15 * u, g) >= 0.16:
                break
        for i in range(2):
            self.model.body_pos[self.model.body(f"pad{i}").id, :2] = pads[i]
            self._set_rgba(f"pad{i}", COLOURS[self.pad_colours[i]])
            self._set_rgba(f"block{i}", COLOURS[self.block_colours[i]])
            self.data.qpos[2 * i : 2 * i + 2] = blocks[i]
        self.pads = np.array(pads)
        self.block_start = blocks[self.named_block].copy()
        start = sample_separated(rng, 1, -WORKSPACE + 0.05, WORKSPACE - 0.05, 0.16, avoid=blocks)[0]
        self.data.mocap_pos[0, :2] = start
        self.instruction = sample_instruction(
            rng, "push", self.held_out_instructions,
            block=self.block_colours[self.named_block], pad=self.pad_colours[self.named_pad],
        )

    def block_xy(self, i: int) -> np.ndarray:
        return self.data.qpos[2 * i : 2 * i + 2].copy()

    def _environment_state(self) -> np.ndarray:
        nb, npad = self.named_block, self.named_pad
        return np.concatenate([self.block_xy(nb), self.pads[npad], self.block_xy(1 - nb), self.pads[1 - npad]])

    def _progress(self) -> tuple[float, bool]:
        block = self.block_xy(self.named_block)
        d_goal = float(np.linalg.norm(block - self.pads[self.named_pad]))
        if d_goal <= SUCCESS_DISTANCE:
            return 1.0, True
        d_effector = float(np.linalg.norm(self.effector_xy - block))
        approach = linear_progress(d_effector, CONTACT_DISTANCE + 0.01, 0.6)
        moved = linear_progress(d_goal, SUCCESS_DISTANCE, 0.5)
        return 0.2 * approach + 0.8 * moved, False

    def _set_goal_configuration(self) -> None:
        pad = self.pads[self.named_pad]
        u = pad - self.block_start  # the goal is the episode's: the same image whenever it is rendered
        u = u / max(np.linalg.norm(u), 1e-9)
        self.data.qpos[2 * self.named_block : 2 * self.named_block + 2] = pad
        # the effector ends where it pushed from: behind the block, on the line it came along
        self.data.mocap_pos[0, :2] = np.clip(pad - u * CONTACT_DISTANCE, -WORKSPACE, WORKSPACE)
