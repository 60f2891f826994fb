"""Where the named objects are on a frame and where they will be on the next, from the state as numbers.

Two small MLPs beside the trunk. ``place`` corrects the objects' placement by the frame's patches
(WorldModel.locate_objects) with the proprioceptive state: on Reacher-v5 the patches lost the fingertip near
the arm's root (10 px off) while the state says where it is. ``move`` predicts, at a step's [EOA], how far
each object moves by the next frame, from the [EOA] hidden state and, side by side, the state and the chunk's
action values: under torque control (Reacher-v5) the fingertip's next position is a smooth function of the
joints, their velocities and the torques, which the trunk, reached only through the tokens, learned to 1.5 px
in 2000 CPU steps (a linear head on [EOA]) and an MLP given the numbers fits to 0.2 px in 1200
(tools/fit_dynamics.py; BENCHMARKS.md, "Reacher-v5: keypoints ahead"). The hidden state carries what only
the frames show (a pushed block).
An unknown state (dropped in training, an imagined frame, a goal image) enters as zeros with its flag off.
Both last layers start at zero: an untrained head keeps the placement and predicts that nothing moves.
"""
from __future__ import annotations

import torch
from torch import nn


def _mlp(inputs: int, width: int, outputs: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(inputs, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                        nn.Linear(width, outputs))
    nn.init.zeros_(net[-1].weight), nn.init.zeros_(net[-1].bias)
    return net


def _known_state(state: torch.Tensor, state_known: torch.Tensor) -> torch.Tensor:
    known = state_known[..., None].to(state.dtype)
    return torch.cat([state * known, known], -1)


class AheadHead(nn.Module):
    """``place`` and ``move`` for N objects; states of Ds dims, chunks of C*A action values, hidden D."""

    def __init__(self, hidden_dim: int, state_dim: int, chunk_action_dim: int, objects: int, width: int = 256):
        super().__init__()
        self.objects = objects
        self.placement = _mlp(2 * objects + state_dim + 1, width, 2 * objects)
        self.motion = _mlp(hidden_dim + state_dim + 1 + chunk_action_dim, width, 2 * objects)

    def place(self, placed: torch.Tensor, state: torch.Tensor, state_known: torch.Tensor) -> torch.Tensor:
        """placed (..., N, 2) image (u, v) from the patches, state (..., Ds) normalised where state_known
        (...,) -> (..., N, 2) the placement corrected."""
        placed = placed.float()
        x = torch.cat([(placed - 0.5).flatten(-2), _known_state(state.float(), state_known)], -1)
        return placed + self.placement(x).float().view_as(placed)

    def move(self, hidden: torch.Tensor, state: torch.Tensor, state_known: torch.Tensor,
             actions: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) at [EOA], state (..., Ds) where state_known (...,), actions (..., C*A) in [-1, 1]
        -> (..., N, 2) change of each object's (u, v) from this frame to the next."""
        x = torch.cat([hidden, _known_state(state.to(hidden.dtype), state_known), actions.to(hidden.dtype)], -1)
        change = self.motion(x).float()
        return change.reshape(*change.shape[:-1], self.objects, 2)
