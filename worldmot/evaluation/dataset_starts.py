"""Episode starts taken from a dataset, for evaluation inside the world model where there is no simulator.

    starts = DatasetStarts(model, "data/theirs", num_envs=4)       # a LeRobot dataset folder or a Hub id
    env = ImaginedVectorEnv(model, starts, max_steps=starts.max_steps)

A dataset written by others has no simulator to reset, so the in-model evaluation starts from its own episodes:
``reset(seed=s)`` gives sub-env j the first frame (every camera the model reads, fitted to the model's image
size as training fits it), state and task of the dataset's episode (s + j) mod N, and ``render_goal`` the
last frame of that episode, which the goal judge compares the imagined frames with. ImaginedVectorEnv never
steps it: from the first frame on, everything is imagined.

Several cameras are one image each under ``pixels`` (named as the policies name them: the feature key without
``observation.images.``); ``render_goal`` gives them side by side, left to right, as the model draws them.
A dataset that does not hold what the model was trained on (a feature, its shape, a camera) is a one-line error.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldmot.datasets.hub import dataset_folder
from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.errors import WorldmotError
from worldmot.model.world_model import WorldModel
from worldmot.policies.chunked import CAMERA_PREFIX
from worldmot.tokenizers.frames import fit_frames


class DatasetStarts(gym.vector.VectorEnv):
    def __init__(self, model: WorldModel, dataset: str, num_envs: int, action_key: str = "action"):
        trained_on = getattr(model, "trained_on", None) or {}
        self.reader = r = LeRobotDatasetReader(dataset_folder(dataset, trained_on.get("cameras", ())))
        self.cameras = model_cameras_in(r, trained_on, model.cameras)
        self.state_keys = trained_on.get("state_keys") or ["observation.state"]
        check_features(r, trained_on.get("features") or {}, [action_key, *self.state_keys])
        self.num_envs, self.metadata = num_envs, {"render_fps": r.fps}
        self.image_size, self.resize = model.cfg.sequence.image_size, model.cfg.sequence.resize
        self.max_steps = max(e.length for e in r.episodes)  # as long as the longest demonstration
        # the policies' agent_pos is the proprioceptive feature, environment_state the privileged one: the
        # model's second state feature where it was trained with one, else the dataset's standard one
        default_env = "observation.environment_state" if "observation.environment_state" in r.features else None
        self.env_state_key = self.state_keys[1] if len(self.state_keys) > 1 else default_env
        self.single_action_space = _action_box(r, action_key)
        self.single_observation_space = self._observation_space()
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.goals: list[np.ndarray] = []

    def _observation_space(self) -> gym.spaces.Dict:
        S = self.image_size
        frame = gym.spaces.Box(0, 255, (S, S, 3), np.uint8)
        state_dim = int(np.prod(self.reader.features[self.state_keys[0]]["shape"]))
        env_dim = int(np.prod(self.reader.features[self.env_state_key]["shape"])) if self.env_state_key else 0
        return gym.spaces.Dict({
            "pixels": gym.spaces.Dict({_pixels_key(c): frame for c in self.cameras}),
            "agent_pos": gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
            "environment_state": gym.spaces.Box(-np.inf, np.inf, (env_dim,), np.float32)})

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[dict, dict]:
        n = self.reader.num_episodes
        episodes = [((seed or 0) + j) % n for j in range(self.num_envs)]
        starts = [self._episode_start(e) for e in episodes]
        self.goals = [s["goal"] for s in starts]
        obs = {"pixels": {_pixels_key(c): np.stack([s["frames"][c] for s in starts]) for c in self.cameras},
               "agent_pos": np.stack([s["state"] for s in starts]),
               "environment_state": np.stack([s["environment_state"] for s in starts])}
        return obs, {"instruction": np.array([s["task"] for s in starts])}

    def _episode_start(self, ep: int) -> dict:
        """The first frame of each camera, the state, the task and the goal (the last frames) of episode ``ep``."""
        r, last = self.reader, self.reader.episode(ep).length - 1
        # fitted as training fits them, so that the imagined frames that follow have the same size
        fitted = [fit_frames(r.episode_frames(ep, c, [0, last]), self.image_size, self.resize) for c in self.cameras]
        vectors = [self.state_keys[0], *([self.env_state_key] if self.env_state_key else [])]
        table = r.episode_table(ep, [*vectors, "task_index"])
        first = {k: np.asarray(table[k][0], np.float32).reshape(-1) for k in vectors}
        return {"frames": {c: f[0] for c, f in zip(self.cameras, fitted)},
                "goal": np.concatenate([f[1] for f in fitted], 1),  # side by side, as the model draws them
                "state": first[self.state_keys[0]],
                "environment_state": first[self.env_state_key] if self.env_state_key else np.zeros(0, np.float32),
                "task": r.tasks[int(table["task_index"][0])]}

    def step(self, actions):
        raise WorldmotError(f"{self.reader.root}: a dataset has no simulator to step (run it inside the world model)")

    def call(self, name: str, *args: Any, **kwargs: Any):
        if name == "render_goal":
            return tuple(self.goals)
        raise AttributeError(f"dataset starts have no {name!r}")

    def get_attr(self, name: str):
        raise AttributeError(f"dataset starts have no {name!r}")

    def close(self, **kwargs: Any) -> None:
        pass


def model_cameras_in(reader: LeRobotDatasetReader, trained_on: dict, count: int) -> list[str]:
    """The camera features the model reads, in its order (one camera without a record: the dataset's first)."""
    cameras = list(trained_on.get("cameras") or reader.camera_keys[:1])
    if len(cameras) != count:
        raise WorldmotError(f"the model reads {count} cameras but its model folder names {len(cameras)} "
                            "(trained_on.cameras in model_meta.json)")
    for name in cameras:
        if name not in reader.camera_keys:
            raise WorldmotError(f"{reader.root}/meta/info.json: no camera {name!r}, which the model was trained on "
                                f"(the dataset's cameras: {reader.camera_keys})")
    return cameras


def check_features(reader: LeRobotDatasetReader, trained: dict, keys: list[str]) -> None:
    """One-line error when the dataset lacks a feature the model was trained on, or has it in another shape."""
    for key in keys:
        if key not in reader.features:
            raise WorldmotError(f"{reader.root}/meta/info.json: no feature {key!r}, which the model was trained on "
                                f"(features: {sorted(reader.features)})")
        shape = [int(d) for d in reader.features[key]["shape"]]
        if key in trained and list(trained[key]) != shape:
            raise WorldmotError(f"{reader.root}/meta/info.json: feature {key!r} of shape {shape}, the model was "
                                f"trained on shape {list(trained[key])}")


def _action_box(reader: LeRobotDatasetReader, key: str) -> gym.spaces.Box:
    """The actions' range: the dataset's min and max (stats.json); unbounded where it has none."""
    st, dim = reader.stats.get(key, {}), int(np.prod(reader.features[key]["shape"]))
    low = np.asarray(st.get("min", np.full(dim, -np.inf)), np.float32).reshape(-1)
    high = np.asarray(st.get("max", np.full(dim, np.inf)), np.float32).reshape(-1)
    return gym.spaces.Box(low, high, (dim,), np.float32)


def _pixels_key(camera: str) -> str:
    return camera.removeprefix(CAMERA_PREFIX)
