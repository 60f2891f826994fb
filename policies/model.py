"""The world model's own AR policy: it writes the action tokens of a chunk, after its reasoning if asked."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldmot.model import imagination
from worldmot.model.world_model import WorldModel
from worldmot.policies.chunked import ChunkedPolicy


class ModelPolicy(ChunkedPolicy):
    """Greedy (temperature 0) or sampled AR decoding of one chunk of C actions per decision.

    ``reason``: write the reasoning text first and act on it. Off by default: the actions are trained on the
    dataset's reasoning, which names the target's position in cm, and lean on it; the reasoning a briefly
    trained model writes can place the target worse than a constant does, and the actions follow it, while an
    empty reasoning is what condition dropout trains the actions on. The planner's AR proposals are decoded
    the same way.
    """

    def __init__(self, model: WorldModel, camera: str | None = None, use_state: bool = True,
                 temperature: float = 0.0, reason: bool = False, seed: int = 0):
        super().__init__(model, camera, use_state)
        self.temperature, self.reason = temperature, reason
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        if seed is not None:
            self.generator.manual_seed(seed)

    def decide(self, tasks, frames, states, observation: dict[str, Any]):
        model = self.model
        st = None if states is None else torch.as_tensor(states)
        im = imagination.start(model, tasks, model.tokenize_frames(frames), st, horizon=1)
        actions, texts = imagination.write_step(im, None, reason=self.reason, temperature=self.temperature,
                                                generator=self.generator)
        return actions.float().numpy().astype(np.float32), (texts if self.reason else None)
