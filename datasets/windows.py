"""Training windows over episodes: frames every ``chunk`` env steps, with the action chunks between them.

A window starts at env step t0 of an episode and has ``n_steps`` frame steps at t0 + k*chunk. Tabular
columns (states, actions, rewards, success, subtask ids) of the selected episodes are read once and kept in
memory (a few floats per frame); frames are decoded on demand, per sample, from the MP4s, and containers
open lazily in each DataLoader worker, so memory is bounded by the windows in flight.

Progress of frame k is ``next.reward`` of the transition that led into it (row t-1), mapped to [0, 1] with the
dataset's reward min/max from stats.json; a frame that starts an episode has progress 0 and success False
(no transition led into it).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from worldmot.datasets.reader import LeRobotDatasetReader
from worldmot.errors import WorldmotError
from worldmot.tokenizers.frames import fit_frames, fit_points
from worldmot.tokenizers.actions import ActionTokenizer


def split_episodes(n_episodes: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Shuffle episode ids with ``seed`` and hold out round(n * val_fraction) (at least 1 when
    val_fraction > 0 and n > 1) for validation. Returns sorted (train_ids, val_ids)."""
    if not 0.0 <= val_fraction < 1.0:
        raise WorldmotError(f"val_fraction: {val_fraction} (expected 0 <= val_fraction < 1)")
    ids = list(range(n_episodes))
    random.Random(seed).shuffle(ids)
    n_val = int(round(n_episodes * val_fraction))
    if val_fraction > 0 and n_episodes > 1:
        n_val = min(max(n_val, 1), n_episodes - 1)
    return sorted(ids[n_val:]), sorted(ids[:n_val])


def delta_timestamps_to_indices(delta_timestamps: dict[str, list[float]], fps: int,
                                tolerance_s: float = 1e-4) -> dict[str, list[int]]:
    """LeRobot's check: every delta must be a multiple of 1/fps within ``tolerance_s``; returns frame offsets."""
    out = {}
    for key, deltas in delta_timestamps.items():
        idx = []
        for d in deltas:
            k = round(d * fps)
            if abs(d - k / fps) > tolerance_s:
                raise WorldmotError(f"delta_timestamps[{key!r}]: {d} is not a multiple of 1/fps = {1 / fps:.6f} "
                                    f"(tolerance {tolerance_s})")
            idx.append(int(k))
        out[key] = idx
    return out


def _reward_range(reader: LeRobotDatasetReader, key: str) -> tuple[float, float]:
    st = reader.stats.get(key, {})
    lo = float(np.min(st["min"])) if "min" in st else 0.0
    hi = float(np.max(st["max"])) if "max" in st else 1.0
    return lo, hi if hi > lo else lo + 1.0


class WindowDataset(Dataset):
    """Samples (dicts of tensors) of ``n_steps`` frames spaced ``chunk`` env steps apart.

    Keys per sample: frames uint8 (n_steps, H, W, 3) of one camera, or (n_steps, Nc, S, S, 3) of several
    (``cameras``, each fitted to ``image_size`` S by the ``resize`` rule: cameras of different sizes stack), frame_is_pad bool (n_steps,), states float32
    (n_steps, state_dim), actions float32 (n_steps, chunk, action_dim), action_is_pad bool (n_steps, chunk),
    instruction str, subtasks list[str] (n_steps), progress float32 (n_steps,), success bool (n_steps,),
    episode_index int, frame_index int (t0); keypoints float32 (n_steps, 2N) where the dataset has
    ``keypoint_key`` (image (u, v) in [0, 1] of the N objects the instruction names, on the first camera's frame as
    fitted to a square by ``resize``); expert_actions float32
    (n_steps, chunk, action_dim) where the dataset has ``expert_action_key`` (what the scripted expert would
    have done at each step, beside the executed actions: the AR policy's targets). Padded positions
    repeat the episode's last row (as LeRobot).
    Actions are raw unless ``normalize_actions``: then q01..q99 of stats.json map to [-1, 1] (values outside
    stay outside). The world model bins raw actions itself with the same q01/q99 (ActionTokenizer).
    """

    def __init__(self, reader: LeRobotDatasetReader | str, camera: str | None = None, n_steps: int = 3,
                 chunk: int = 4, episodes: list[int] | None = None, stride: int = 1,
                 state_key: str | list[str] = "observation.state", action_key: str = "action",
                 reward_key: str = "next.reward", success_key: str = "next.success", normalize_actions: bool = False,
                 keypoint_key: str = "observation.keypoints", expert_action_key: str = "expert_action",
                 cameras: list[str] | None = None, image_size: int | None = None, resize: str = "crop"):
        self.reader = reader if isinstance(reader, LeRobotDatasetReader) else LeRobotDatasetReader(reader)
        r = self.reader
        if not r.camera_keys:
            raise WorldmotError(f"{r.root}: no camera feature (expected a video or image feature)")
        self.cameras = list(cameras) if cameras else [camera or r.camera_keys[0]]
        for name in self.cameras:
            if name not in r.camera_keys:
                raise WorldmotError(f"camera {name!r}: not in {r.root} (expected one of {r.camera_keys})")
        if len(self.cameras) > 1 and not image_size:
            raise WorldmotError(f"windows of cameras {self.cameras}: several cameras need image_size (they are "
                                "fitted to one square size to stack)")
        self.camera = self.cameras[0]
        self.image_size, self.resize = image_size, resize
        # several state keys: the state is their concatenation (the proprioceptive state, then privileged state)
        self.state_keys = [state_key] if isinstance(state_key, str) else list(state_key)
        for key in (*self.state_keys, action_key):
            if key not in r.features:
                raise WorldmotError(f"{r.root}/meta/info.json: no feature {key!r}")
        if n_steps < 1 or chunk < 1 or stride < 1:
            raise WorldmotError(f"windows: n_steps={n_steps}, chunk={chunk}, stride={stride} (expected >= 1)")
        self.n_steps, self.chunk = n_steps, chunk
        self.episode_ids = list(range(r.num_episodes)) if episodes is None else [int(e) for e in episodes]
        for e in self.episode_ids:
            r.episode(e)  # range check
        keys = [*self.state_keys, action_key, "task_index"]
        self.reward_key = reward_key if reward_key in r.features else None
        self.success_key = success_key if success_key in r.features else None
        self.subtask_key = "subtask_index" if "subtask_index" in r.features and r.subtasks else None
        self.keypoint_key = keypoint_key if keypoint_key in r.features else None
        height, width = (int(n) for n in r.features[self.camera]["shape"][:2])
        # (H, W, S) of fit_points; no size given: only the crop or the bars matter
        self._keypoint_frame = (height, width, int(image_size or max(height, width)))
        self.expert_action_key = expert_action_key if expert_action_key in r.features else None
        keys += [k for k in (self.reward_key, self.success_key, self.subtask_key, self.keypoint_key,
                             self.expert_action_key) if k]
        self._cols: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for e in self.episode_ids:
            table = r.episode_table(e, keys)
            for k in keys:
                self._cols[k].append(table[k])
        self.action_key = action_key
        # the action tokenizer's own map (q01/q99 of stats.json to [-1, 1]), so both agree on the range
        self.action_norm = ActionTokenizer.from_stats(r.stats, key=action_key) if normalize_actions else None
        self._lo, self._hi = _reward_range(r, reward_key)
        self._index = [(i, t0) for i, e in enumerate(self.episode_ids)
                       for t0 in range(0, r.episodes[e].length, stride)]

    def __len__(self) -> int:
        return len(self._index)

    def column(self, key: str) -> np.ndarray:
        """One tabular column (state, action, reward, ...) over the selected episodes, (N, ...) in episode order."""
        if key not in self._cols:
            raise WorldmotError(f"windows: column {key!r} is not loaded (loaded: {sorted(self._cols)})")
        return np.concatenate(self._cols[key])

    def _actions(self, rows: np.ndarray) -> torch.Tensor:
        actions = torch.from_numpy(np.asarray(rows, dtype=np.float32))
        return actions if self.action_norm is None else self.action_norm.normalize(actions)

    def _states(self, col: dict[str, np.ndarray], f: np.ndarray) -> np.ndarray:
        """(n_steps, S) float32 states at frames ``f``: the state keys' values side by side."""
        parts = [np.asarray(col[k][f], dtype=np.float32) for k in self.state_keys]
        return parts[0] if len(parts) == 1 else np.concatenate([p.reshape(len(f), -1) for p in parts], -1)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i, t0 = self._index[idx]
        ep = self.episode_ids[i]
        col = {k: v[i] for k, v in self._cols.items()}
        length = len(col["task_index"])
        steps = t0 + self.chunk * np.arange(self.n_steps)
        frame_is_pad = steps >= length
        f = np.minimum(steps, length - 1)
        act_idx = steps[:, None] + np.arange(self.chunk)[None, :]
        action_is_pad = act_idx >= length
        prev = f - 1
        if self.reward_key:
            r = np.where(prev >= 0, col[self.reward_key][np.maximum(prev, 0)].reshape(-1), self._lo)
            progress = np.clip((r - self._lo) / (self._hi - self._lo), 0.0, 1.0)
        else:
            progress = np.zeros(self.n_steps)
        success = (np.where(prev >= 0, col[self.success_key][np.maximum(prev, 0)].reshape(-1), False)
                   if self.success_key else np.zeros(self.n_steps, bool))
        if self.subtask_key:
            subtasks = [self.reader.subtasks[int(s)] for s in col[self.subtask_key][f]]
        else:
            subtasks = [""] * self.n_steps
        unique_f, inverse = np.unique(f, return_inverse=True)
        frames = self._frames(ep, unique_f)[inverse]
        rows = np.minimum(act_idx, length - 1)
        extra = {}
        if self.keypoint_key:  # points of the first camera's image, as the model sees it (cropped or letterboxed)
            uv = fit_points(col[self.keypoint_key][f], *self._keypoint_frame, self.resize)
            extra["keypoints"] = torch.from_numpy(uv)
        if self.expert_action_key:
            extra["expert_actions"] = self._actions(col[self.expert_action_key][rows])
        return {
            **extra,
            "frames": torch.from_numpy(frames),
            "frame_is_pad": torch.from_numpy(frame_is_pad),
            "states": torch.from_numpy(self._states(col, f)),
            "actions": self._actions(col[self.action_key][rows]),
            "action_is_pad": torch.from_numpy(action_is_pad),
            "instruction": self.reader.tasks[int(col["task_index"][t0])],
            "subtasks": subtasks,
            "progress": torch.from_numpy(progress.astype(np.float32)),
            "success": torch.from_numpy(success.astype(bool)),
            "episode_index": ep,
            "frame_index": int(t0),
        }


    def _frames(self, ep: int, indices: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) of the one camera, or (N, Nc, S, S, 3) of several, each fitted to image_size S."""
        if len(self.cameras) == 1:
            return self.reader.episode_frames(ep, self.camera, indices)
        views = [fit_frames(self.reader.episode_frames(ep, name, indices), self.image_size, self.resize)
                 for name in self.cameras]
        return np.stack(views, 1)


def collate_windows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors over the batch; strings stay lists: instruction list[str] (B), subtasks list[list[str]]
    (B, n_steps); episode_index/frame_index become int64 tensors (B,)."""
    out: dict[str, Any] = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], int):
            out[key] = torch.tensor(vals, dtype=torch.int64)
        else:
            out[key] = vals
    return out


class FrameDataset(Dataset):
    """LeRobot-style items: one per frame, with ``delta_timestamps`` windows per key and ``<key>_is_pad``.

    Cameras come back as float32 (T, 3, H, W) in [0, 1] (T = len(deltas); no T axis without deltas), like
    ``LeRobotDataset``; offsets are clamped to the episode.
    """

    def __init__(self, reader: LeRobotDatasetReader | str, delta_timestamps: dict[str, list[float]] | None = None,
                 episodes: list[int] | None = None):
        self.reader = reader if isinstance(reader, LeRobotDatasetReader) else LeRobotDatasetReader(reader)
        r = self.reader
        self.delta = delta_timestamps_to_indices(delta_timestamps or {}, r.fps)
        for key in self.delta:
            if key not in r.features:
                raise WorldmotError(f"delta_timestamps: unknown feature {key!r} (expected one of {sorted(r.features)})")
        self.episode_ids = list(range(r.num_episodes)) if episodes is None else list(episodes)
        self._index = [(e, t) for e in self.episode_ids for t in range(r.episodes[e].length)]
        self._tables: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        ep, t = self._index[idx]
        r = self.reader
        table = r.episode_table(ep)
        length = r.episodes[ep].length
        item: dict[str, Any] = {k: torch.as_tensor(v[t]) for k, v in table.items() if v.dtype != object}
        for key in r.camera_keys:
            offs = np.asarray(self.delta.get(key, [0]))
            pos = np.clip(t + offs, 0, length - 1)
            frames = torch.from_numpy(r.episode_frames(ep, key, pos)).permute(0, 3, 1, 2).float() / 255.0
            item[key] = frames if key in self.delta else frames[0]
            if key in self.delta:
                item[f"{key}_is_pad"] = torch.from_numpy((t + offs < 0) | (t + offs >= length))
        for key, offs in self.delta.items():
            if key in r.camera_keys:
                continue
            o = np.asarray(offs)
            item[key] = torch.as_tensor(table[key][np.clip(t + o, 0, length - 1)])
            item[f"{key}_is_pad"] = torch.from_numpy((t + o < 0) | (t + o >= length))
        item["task"] = r.tasks[int(table["task_index"][t])]
        if "subtask_index" in table and r.subtasks:
            item["subtask"] = r.subtasks[int(table["subtask_index"][t])]
        return item
