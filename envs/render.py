"""A fast offscreen camera for MuJoCo models: shadows, reflections and skybox off.

On a machine without a GPU (EGL + Mesa's llvmpipe) the default scene renders ~15 frames/s at 64x64;
with shadows off ~310/s, and with reflections and skybox off too ~450/s. The tasks need neither.
The GL context is made on the first ``render`` call, so an env can be pickled into a vector-env worker
before any rendering happens.
"""
from __future__ import annotations

import os

import mujoco
import numpy as np

from worldmot.errors import WorldmotError

# pid of the process that made the first GL context. Mesa's EGL does not survive fork(): a child forked
# after its parent rendered hangs on its first render. Fail loudly instead.
_GL_PID: int | None = None


def make_fast(model: mujoco.MjModel, size: int) -> None:
    """Switch off shadows and make the offscreen buffer at least ``size`` pixels wide and high."""
    model.vis.quality.shadowsize = 0
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)


class FastCamera:
    """Renders (H, W, 3) uint8 images of ``data`` from one camera.

    ``camera`` is a camera name in the model, or a ``mujoco.MjvCamera`` (a free camera, for models
    that have no suitable camera of their own).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        image_size: int,
        camera: str | mujoco.MjvCamera,
        hidden_groups: tuple[int, ...] = (),
    ):
        make_fast(model, image_size)
        self.model = model
        self.image_size = int(image_size)
        self.camera = camera
        self.hidden_groups = tuple(hidden_groups)  # geom groups not drawn (e.g. collision-only shapes)
        self._renderer: mujoco.Renderer | None = None
        self._option: mujoco.MjvOption | None = None

    def _ensure(self) -> mujoco.Renderer:
        global _GL_PID
        if self._renderer is None:
            if _GL_PID is not None and _GL_PID != os.getpid() and os.environ.get("MUJOCO_GL") == "egl":
                raise WorldmotError(
                    "rendering in a process forked after its parent rendered hangs with EGL; make vector envs "
                    "with worldmot.envs.make_vec or vector_kwargs={'context': 'spawn'}"
                )
            _GL_PID = _GL_PID or os.getpid()
            r = mujoco.Renderer(self.model, self.image_size, self.image_size)
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._renderer = r
            self._option = mujoco.MjvOption()
            for g in self.hidden_groups:
                self._option.geomgroup[g] = 0
        return self._renderer

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """(H, W, 3) uint8 image of ``data`` as it is (call mj_forward first if qpos changed)."""
        r = self._ensure()
        r.update_scene(data, camera=self.camera, scene_option=self._option)
        # update_scene rebuilds the scene but keeps the flags; set them again anyway (cheap, and
        # older MuJoCo versions reset them).
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        return r.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __getstate__(self):
        # A GL context cannot cross a process boundary; the copy makes its own on first use.
        state = dict(self.__dict__)
        state["_renderer"] = None
        state["_option"] = None
        return state
