"""Shared plumbing of the policies that drive a world model: observations in, chunks of actions out.

Both the AR policy and the planner decide a chunk of C env actions at once (the model's unit of time)
and then play it out one action per ``act``. A vector env's sub-envs share the clock (they step together),
so one queue of shape (B, L, A) serves all of them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from worldmot.errors import WorldmotError
from worldmot.model.world_model import WorldModel
from worldmot.policies.base import is_batched, tasks_of


CAMERA_PREFIX = "observation.images."  # a dataset's camera feature is this + the env's pixels key


def state_observation_keys(model: WorldModel) -> list[str]:
    """The observation keys whose concatenation is the model's state, in order: ``agent_pos`` (the features'
    proprioceptive state, data.state_key), then ``environment_state`` where the model folder records a
    privileged state feature besides it (trained_on.state_keys: data.environment_state_key)."""
    features = (getattr(model, "trained_on", None) or {}).get("state_keys") or ["observation.state"]
    return ["agent_pos", "environment_state"][:len(features)]


def observation_arrays(observation: dict[str, Any], camera: str | list[str] | None,
                       state_keys: list[str] | tuple[str, ...] = ("agent_pos",),
                       ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | None]:
    """frames and states (B, S) (or None) from a single or batched observation. ``camera``: one pixels key
    (None: the first) -> frames (B, H, W, 3) uint8; a list of keys (several cameras) -> a list of such arrays.
    ``state_keys``: the observation keys concatenated into the state (None where there is no agent_pos)."""
    pixels = observation.get("pixels")
    if not isinstance(pixels, dict) or not pixels:
        raise WorldmotError("observation['pixels']: expected a dict of camera images (LeRobot's env convention)")
    names = camera if isinstance(camera, list) else [camera or next(iter(pixels))]
    for name in names:
        if name not in pixels:
            raise WorldmotError(f"observation['pixels']: no camera {name!r}; has {sorted(pixels)}")
    views = [np.asarray(pixels[name]) for name in names]
    state = None
    if "agent_pos" in observation:
        for key in state_keys:
            if key not in observation:
                raise WorldmotError(f"observation[{key!r}]: missing (the model's state reads it); has {sorted(observation)}")
        state = np.concatenate([np.asarray(observation[k], np.float32) for k in state_keys], axis=-1)
    if not is_batched(observation):
        views, state = [v[None] for v in views], None if state is None else state[None]
    return (views if isinstance(camera, list) else views[0]), state


def model_cameras(model: WorldModel, camera: str | None) -> str | list[str] | None:
    """The pixels keys a model reads: ``camera`` (None: the observation's first) for a one-camera model; for
    several, the cameras its model folder records it was trained on (``trained_on["cameras"]``)."""
    Nc = model.cfg.sequence.cameras
    if Nc == 1:
        return camera
    trained = list((getattr(model, "trained_on", None) or {}).get("cameras", []))
    if len(trained) != Nc:
        raise WorldmotError(f"the model reads {Nc} cameras but its model folder names {len(trained)} "
                            "(trained_on.cameras in model_meta.json)")
    return [name.removeprefix(CAMERA_PREFIX) for name in trained]


def check_model_fits(model: WorldModel, action_dim: int, state_dim: int | None) -> None:
    """A one-line error when the model was trained for other action or state sizes than the env has."""
    seq = model.cfg.sequence
    if seq.action_dim != action_dim:
        raise WorldmotError(f"model action_dim={seq.action_dim} does not fit the env's action space ({action_dim} dims)")
    if state_dim is not None and seq.state_dim != state_dim:
        raise WorldmotError(f"model state_dim={seq.state_dim} does not fit the env's "
                            f"{' + '.join(state_observation_keys(model))} ({state_dim} dims)")


class ChunkedPolicy:
    """Base: subclasses implement ``decide(tasks, frames, states, observation) -> (B, L, A)`` actions."""

    def __init__(self, model: WorldModel, camera: str | None = None, use_state: bool = True):
        self.model, self.camera, self.use_state = model, model_cameras(model, camera), use_state
        self.state_keys = state_observation_keys(model)
        self.reasoning: str | list[str] | None = None
        self.queue: np.ndarray | None = None  # (B, L, A) actions still to play
        self._reasons: list[str] | None = None
        self.step = 0  # env steps since reset: the step at which decide() is called

    def reset(self, seed: int | None = None) -> None:
        self.queue, self.reasoning, self._reasons = None, None, None
        self.step = 0

    def decide(self, tasks: list[str], frames: np.ndarray, states: np.ndarray | None,
               observation: dict[str, Any]) -> tuple[np.ndarray, list[str] | None]:
        raise NotImplementedError

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        batched = is_batched(observation)
        if self.queue is None or self.queue.shape[1] == 0:
            frames, states = observation_arrays(observation, self.camera, self.state_keys)
            self.queue, self._reasons = self.decide(tasks_of(observation), frames, states if self.use_state else None,
                                                    observation)
        action, self.queue = self.queue[:, 0], self.queue[:, 1:]
        self.step += 1
        reasons = self._reasons
        self.reasoning = (list(reasons) if batched else reasons[0]) if reasons is not None else None
        return action.astype(np.float32) if batched else action[0].astype(np.float32)
