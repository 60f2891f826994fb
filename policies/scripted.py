"""The scripted experts of worldmot.envs behind the Policy protocol, optionally with exploration noise."""
from __future__ import annotations

from typing import Any

import numpy as np

from worldmot.errors import WorldmotError
from worldmot.policies.base import is_batched, tasks_of
from worldmot.policies.randomness import EnvRandomness


class ScriptedPolicy:
    """Wraps an expert ``(agent_pos (B,S), environment_state (B,E), tasks) -> (actions (B,A), subtasks)``.

    Needs "agent_pos" and "environment_state" in the observation (privileged state): it is a data
    generator and a reference, not a pixel policy.

    ``action_noise`` > 0 adds temporally correlated Gaussian noise (an AR(1) process, ``noise_correlation``
    from one step to the next, stationary std ``action_noise``) before clipping to [-1, 1]. A noise-free
    expert's action is a function of the frame and the instruction, so a world model trained on its
    episodes can predict the next frame without reading the action, and then ignores it: a planner can
    not steer it. Noise held over several steps moves the effector by visibly different amounts within
    one action chunk, which the model can only explain from the actions. The expert keeps correcting,
    so episodes still succeed; the reasoning text stays the expert's.

    ``noise_duty`` < 1 switches the noise on in bursts (mean length ``burst`` steps) for that fraction of
    the steps, per env: the clean stretches keep the expert's action sharp for the AR policy to imitate
    (with noise everywhere its action tokens were near-uniform after a 10-minute run), the noisy ones
    teach the world model what actions do.
    """

    def __init__(self, expert, action_noise: float = 0.0, noise_correlation: float = 0.8, seed: int | None = None,
                 noise_duty: float = 1.0, burst: float = 8.0):
        if action_noise < 0 or not 0 <= noise_correlation < 1 or not 0 < noise_duty <= 1 or burst < 1:
            raise WorldmotError(f"scripted policy: action_noise {action_noise} (expected >= 0), noise_correlation "
                                f"{noise_correlation} (expected in [0, 1)), noise_duty {noise_duty} (expected in "
                                f"(0, 1]) and burst {burst} (expected >= 1)")
        self.expert = expert
        self.action_noise = float(action_noise)
        self.noise_correlation = float(noise_correlation)
        self.noise_duty, self.burst = float(noise_duty), float(burst)
        self._on: np.ndarray | None = None  # (B,) bool: the noise is on in this env
        self.reasoning: str | list[str] | None = None
        self._rows = EnvRandomness(seed)
        self._noise: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        self.reasoning = None
        self._noise, self._on = None, None
        self._rows.reset(seed)

    def reset_envs(self, seeds: dict[int, int | None]) -> None:
        """Sub-envs ``k`` start an episode seeded ``seeds[k]``: their noise starts afresh from that seed."""
        self._rows.reset_rows(seeds)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        batched = is_batched(observation)
        pos = np.asarray(observation["agent_pos"], np.float64)
        state = np.asarray(observation["environment_state"], np.float64)
        if not batched:
            pos, state = pos[None], state[None]
        actions, subtasks = self.expert(pos, state, tasks_of(observation))
        actions = self._add_noise(np.asarray(actions, np.float32))
        if batched:
            self.reasoning = list(subtasks)
            return actions
        self.reasoning = subtasks[0]
        return actions[0]

    def _add_noise(self, actions: np.ndarray) -> np.ndarray:
        """(B, A) -> (B, A): expert actions plus the AR(1) noise, clipped to the action range."""
        if self.action_noise == 0:
            return actions
        rho = self.noise_correlation
        rngs = self._rows.generators(len(actions))
        if self._noise is None or self._noise.shape != actions.shape:
            self._noise, self._on = np.zeros(actions.shape), np.zeros(len(actions), bool)
            self._rows.started.update(range(len(actions)))
        for b, rng in enumerate(rngs):  # each row draws from its own episode's generator, in a fixed order
            fresh = rng.normal(0.0, self.action_noise, actions.shape[1:])
            if b in self._rows.started:
                self._noise[b] = fresh
                self._on[b] = rng.random() < self.noise_duty
                continue
            self._noise[b] = rho * self._noise[b] + np.sqrt(1 - rho**2) * fresh
            if self.noise_duty < 1:  # a two-state Markov switch: on-runs of mean `burst` steps, duty noise_duty
                to_off, to_on = 1 / self.burst, self.noise_duty / (self.burst * (1 - self.noise_duty))
                self._on[b] ^= rng.random() < (to_off if self._on[b] else min(1.0, to_on))
        self._rows.started.clear()
        return np.clip(actions + self._noise * self._on[:, None], -1.0, 1.0).astype(np.float32)
