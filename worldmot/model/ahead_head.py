"""Where the named objects will be in the next frame, predicted at a step's [EOA].

A small MLP over the [EOA] hidden state and, side by side, the step's proprioceptive state and the chunk's
action values as numbers. On Reacher-v5 (torque control) the fingertip's next position is a smooth function of
the joints, their velocities and the torques; the trunk, reached only through the tokens, learned it to
1.5 px in 2000 CPU steps (a linear head on [EOA]), while an MLP given the same numbers directly fits it to
0.2 px in 1200 (BENCHMARKS.md, "keypoints ahead"). The hidden state carries what only the frames show (the
target, a pushed block).
"""
from __future__ import annotations

import torch
from torch import nn


class AheadHead(nn.Module):
    """(hidden (..., D), state (..., Ds) normalised, state_known (...,) bool, actions (..., C*A) in [-1, 1])
    -> (..., N, 2) change of each object's image (u, v) from this frame to the next.

    An unknown state (dropped in training, an imagined frame) enters as zeros with its flag off. The last
    layer starts at zero: an untrained head predicts that nothing moves."""

    def __init__(self, hidden_dim: int, state_dim: int, chunk_action_dim: int, objects: int, width: int = 256):
        super().__init__()
        self.objects = objects
        self.net = nn.Sequential(nn.Linear(hidden_dim + state_dim + 1 + chunk_action_dim, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2 * objects))
        nn.init.zeros_(self.net[-1].weight), nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: torch.Tensor, state: torch.Tensor, state_known: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        known = state_known[..., None].to(hidden.dtype)
        x = torch.cat([hidden, state.to(hidden.dtype) * known, known, actions.to(hidden.dtype)], -1)
        change = self.net(x).float()
        return change.reshape(*change.shape[:-1], self.objects, 2)
