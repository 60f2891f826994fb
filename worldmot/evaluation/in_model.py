"""Evaluation inside the world model: a vector env whose future frames, progress and success are imagined.

    env = ImaginedVectorEnv(model, make_env(env_id, 10, "sync"), max_steps=50)   # worldmot.envs.make
    result = evaluate_in_simulator(env, env_id, policy, "planner", episodes=50, seed=100_000)

``reset`` takes the simulator's first frame, state and instruction of each seeded episode (the same starts as
an evaluation in the simulator); from then on nothing comes from the simulator. Actions are gathered into
the model's chunks of C; after each chunk the model imagines the next frame, and its predicted progress is
the reward. Success is judged by the model in one of two ways (``judge``):

- "goal" (default): the state the model reads off the imagined frame (WorldModel.read_state) comes within
  ``goal_tolerance`` of the state it reads off the episode's goal image (WorldModel.state_distance:
  normalised units, each dimension weighted by how well the model reads it). The distance at a true success
  grows with the state's size (median 0.12 on Reach's 4 numbers, 0.27 on Meta-World's 44, with a longer tail), so the tolerance
  is the model's own where it was calibrated (tools/probes/calibrate_goal_judge.py --write:
  MODEL/goal_judge.json), else GOAL_TOLERANCE;
- "token": its probability of the <success> token passes ``success_threshold``. Episodes end at success,
  so a recording shows that token once per successful episode, and a tiny model rarely predicts it.

Between chunk boundaries the observation keeps the last imagined frame (the model's unit of time). A model of
several cameras reads the cameras its model folder names (trained_on.cameras) and imagines each; the goal
image then holds them side by side, as the model draws them.

The simulator only gives the starts: a dataset's episodes do as well (DatasetStarts, dataset_starts.py).

What a policy may read besides the frame: ``agent_pos`` is integrated from the actions where the env is a
kinematic tabletop task (``max_step`` metres per unit action, the effector's own odometry), elsewhere it is
the state the model reads off its newest imagined frame; ``environment_state`` is read off it as well where
the model was trained with it in its state (data.environment_state_key: the scripted expert then acts on the
imagined object positions), else it stays what it was at reset (right for Reach, whose targets do not move;
the scripted Push expert in imagination believes the block never moves).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldmot.errors import WorldmotError
from worldmot.model import imagination
from worldmot.model.world_model import WorldModel
from worldmot.policies.chunked import model_cameras, state_observation_keys

# normalised state distance under which judge="goal" counts an imagined frame as the goal reached, for a model
# without a calibrated tolerance of its own. On true Reach frames (tools/probes/calibrate_goal_judge.py, 30
# scripted + 30 random episodes) the read-out is 0.12 from the goal's at a true success (median; 90th
# percentile 0.20), and 0.3 judged every episode right (0.2: 98%)
GOAL_TOLERANCE = 0.3


class ImaginedVectorEnv(gym.vector.VectorEnv):
    def __init__(self, model: WorldModel, sim: gym.vector.VectorEnv, max_steps: int, flow_steps: int = 1,
                 judge: str = "goal", goal_tolerance: float | None = None, success_threshold: float = 0.5):
        """``goal_tolerance`` None: the model's calibrated one (model.goal_tolerance), else GOAL_TOLERANCE."""
        if judge not in ("goal", "token"):
            raise WorldmotError(f"judge={judge!r}: expected 'goal' or 'token'")
        self.model, self.sim = model, sim
        self.num_envs = sim.num_envs
        self.single_action_space, self.action_space = sim.single_action_space, sim.action_space
        self.single_observation_space, self.observation_space = sim.single_observation_space, sim.observation_space
        self.metadata = sim.metadata
        self.max_steps, self.flow_steps, self.success_threshold = max_steps, flow_steps, success_threshold
        if goal_tolerance is None:
            goal_tolerance = getattr(model, "goal_tolerance", None) or GOAL_TOLERANCE
        if not goal_tolerance > 0:
            raise WorldmotError(f"goal_tolerance={goal_tolerance}: expected a positive distance")
        self.judge, self.goal_tolerance = judge, float(goal_tolerance)
        self.chunk = model.cfg.sequence.chunk
        try:
            self.max_step = float(sim.get_attr("max_step")[0])
        except AttributeError:
            self.max_step = None
        self.im: imagination.Imagination | None = None

    def reset(self, *, seed=None, options=None) -> tuple[dict, dict]:
        obs, info = self.sim.reset(seed=seed, options=options)
        self.tasks = [str(s) for s in info["instruction"]]
        self.obs = {"pixels": {k: np.array(v) for k, v in obs["pixels"].items()},
                    "agent_pos": np.array(obs["agent_pos"], np.float32),
                    "environment_state": np.array(obs["environment_state"], np.float32)}
        self.cameras = model_cameras(self.model, None) if self.model.cameras > 1 else [next(iter(self.obs["pixels"]))]
        self.state_keys = state_observation_keys(self.model)
        self._start(self.model.tokenize_frames(self._views(self.obs["pixels"])), self._state(self.obs["agent_pos"]))
        self.frame_pos = self.obs["agent_pos"].copy()  # the effector's odometry when the newest frame was taken
        if self.judge == "goal":
            goals = self._model_input(side_by_side_views(np.stack(self.sim.call("render_goal")), self.model.cameras))
            self.goal_state = imagination.start(self.model, self.tasks, self.model.tokenize_frames(goals)).state
        self.pending: list[np.ndarray] = []
        self.t = 0
        B = self.num_envs
        self.progress, self.success = np.zeros(B, np.float32), np.zeros(B, bool)
        return self.obs, info

    def _views(self, pixels: dict):
        return self._model_input([pixels[name] for name in self.cameras])

    def _model_input(self, views: list[np.ndarray]):
        """What tokenize_frames reads: the one camera's frames, or the list of each camera's frames."""
        return views if self.model.cameras > 1 else views[0]

    def _state(self, agent_pos: np.ndarray) -> torch.Tensor:
        """(B, S) the model's state: ``agent_pos`` then the other observation keys it reads, as they are now."""
        rest = [self.obs[k] for k in self.state_keys if k != "agent_pos"]
        return torch.as_tensor(np.concatenate([agent_pos, *rest], axis=-1), dtype=torch.float32)

    def _read_state(self, state: np.ndarray) -> None:
        """Split the model's read-out state (B, S) back into the observation keys it concatenates, so the
        policies (and the scripted expert, on environment_state) see the imagined state."""
        start = 0
        for key in self.state_keys:
            width = self.obs[key].shape[-1]
            self.obs[key] = state[:, start:start + width].astype(np.float32)
            start += width

    def _start(self, frame_tokens: torch.Tensor, states: torch.Tensor | None) -> None:
        horizon = max(1, self.model.cfg.sequence.n_steps - 1)
        self.im = imagination.start(self.model, self.tasks, frame_tokens, states, horizon=horizon)

    def step(self, actions: np.ndarray):
        actions = np.clip(np.asarray(actions, np.float32), self.single_action_space.low, self.single_action_space.high)
        self.pending.append(actions)
        self.t += 1
        if self.max_step is not None:
            box = self.single_observation_space["agent_pos"]
            self.obs["agent_pos"] = np.clip(self.obs["agent_pos"] + actions * self.max_step, box.low, box.high)
        if len(self.pending) == self.chunk:
            self._imagine(np.stack(self.pending, 1))
            self.pending = []
        B = self.num_envs
        terminated = self.success.copy()
        truncated = np.full(B, self.t >= self.max_steps) & ~terminated
        info = {"is_success": self.success.copy(), "progress": self.progress.copy()}
        return self.obs, self.progress.copy(), terminated, truncated, info

    @torch.no_grad()
    def _imagine(self, chunk: np.ndarray) -> None:
        """chunk (B, C, A): write it, imagine the next frame, read progress and success."""
        im = self.im
        if im.step + 1 >= im.layout.n_steps:  # the window is full: restart from the newest frame
            # with the effector's odometry as its state where there is one: restarted without a state, the
            # model lost track of the effector within a few windows (random actions judged 30% successful)
            odometry = self._state(self.frame_pos) if self.max_step is not None else None
            self._start(im.last_frame, odometry)
            im = self.im
        imagination.write_step(im, torch.as_tensor(chunk))
        frame = imagination.imagine_frame(im, self.flow_steps)
        pixels = self.model.detokenize_frames(frame).float().clamp(-1, 1)
        frames = ((pixels + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for name, view in zip(self.cameras, side_by_side_views(frames, self.model.cameras)):
            self.obs["pixels"][name] = view
        self.progress = im.progress().float().cpu().numpy()
        if self.judge == "goal":
            done = self.model.state_distance(im.state, self.goal_state) < self.goal_tolerance
        else:
            done = im.success_probability().float() > self.success_threshold
        self.success = self.success | done.cpu().numpy()
        self.frame_pos = self.obs["agent_pos"].copy()
        if self.max_step is None:
            self._read_state((im.state * self.model.state_std + self.model.state_mean).float().cpu().numpy())

    def call(self, name: str, *args: Any, **kwargs: Any):
        return self.sim.call(name, *args, **kwargs)

    def get_attr(self, name: str):
        return self.sim.get_attr(name)

    def close(self, **kwargs: Any) -> None:
        self.sim.close()


def side_by_side_views(frames: np.ndarray, cameras: int) -> list[np.ndarray]:
    """Frames (..., H, Nc*W, 3) of Nc cameras side by side -> the list of the Nc views."""
    if frames.shape[-2] % cameras:
        raise WorldmotError(f"images of width {frames.shape[-2]}: expected {cameras} cameras side by side")
    return list(np.split(frames, cameras, axis=-2))
