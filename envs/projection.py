"""Where points of a MuJoCo scene fall in a camera's square image: keypoints as image (u, v) in [0, 1].

u runs left to right and v top to bottom from the top-left corner, as a square render by FastCamera shows
them; points outside the view are clipped to the image's border.
"""
from __future__ import annotations

import mujoco
import numpy as np

from worldmot.envs.render import FastCamera


def project(points: np.ndarray, camera: mujoco.MjvCamera, fovy: float) -> np.ndarray:
    """(P, 3) world points -> (P, 2) float32 (u, v) in [0, 1] from the free ``camera`` (vertical field of
    view ``fovy`` degrees)."""
    az, el = np.radians(camera.azimuth), np.radians(camera.elevation)
    forward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    up = np.array([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)])
    right = np.cross(forward, up)
    rel = points - (np.asarray(camera.lookat) - camera.distance * forward)
    scale = 2.0 * np.tan(np.radians(fovy) / 2.0) * (rel @ forward)
    uv = np.stack([0.5 + (rel @ right) / scale, 0.5 - (rel @ up) / scale], -1)
    return np.clip(uv, 0.0, 1.0).astype(np.float32)


def project_named(points: np.ndarray, model: mujoco.MjModel, data: mujoco.MjData, camera: str) -> np.ndarray:
    """(P, 3) world points -> (P, 2) float32 (u, v) in [0, 1] from the model's camera ``camera`` (its frame:
    x right, y up, looking along -z)."""
    index = model.camera(camera).id
    pos, axes = data.cam_xpos[index], data.cam_xmat[index].reshape(3, 3)
    rel = (points - pos) @ axes  # camera coordinates
    scale = 2.0 * np.tan(np.radians(float(model.cam_fovy[index])) / 2.0) * (-rel[:, 2])
    uv = np.stack([0.5 + rel[:, 0] / scale, 0.5 - rel[:, 1] / scale], -1)
    return np.clip(uv, 0.0, 1.0).astype(np.float32)


def project_points(points: np.ndarray, camera: FastCamera, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """(P, 3) world points -> (P, 2) (u, v) in ``camera``'s image, a named or a free camera."""
    if isinstance(camera.camera, str):
        return project_named(points, model, data, camera.camera)
    return project(points, camera.camera, float(model.vis.global_.fovy))
