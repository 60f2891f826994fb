"""Where the named objects are: on a frame (its patches, its [EOF]) and on the next frame (at a step's [EOA]).

Axes (model/mot.py's legend): N named objects (the effector last), P patches per frame, D width, Ds state
dimensions, C*A a chunk's action values; (u, v) image coordinates in [0, 1], u right, v down.

Three heads, each zero at the start (no object anywhere in particular, nothing moves):

- :class:`KeypointHead`, per frame patch and object: a logit for the object being in the patch and where in
  the patch it is. The patches place an object to a pixel or two.
- :class:`ObjectReadout`, at a frame's [EOF] (beside the state read-out): where the objects are, for later
  tokens to look up. One vector for the whole frame places them far less precisely than the patches do.
- :class:`AheadHead`, two small MLPs beside the trunk. ``place`` corrects the patches' placement with the
  proprioceptive state: near the arm's root the patches can lose a thin fingertip that the joint angles
  place exactly. ``move`` predicts, at a step's [EOA], how far each object moves by the next frame, from the
  [EOA] hidden state and, side by side, the state and the chunk's action values: under torque control the
  fingertip's next position is a smooth function of the joints, their velocities and the torques, which an
  MLP given the numbers fits closely and a linear head on the trunk (reached only through the tokens) fits
  far worse (tools/probes/fit_dynamics.py measures that yardstick). The hidden state carries what only the frames
  show (a pushed block). An unknown state (dropped in training, an imagined frame, a goal image) enters as
  zeros with its flag off.
"""
from __future__ import annotations

import torch
from torch import nn


def cell_centre(cell: torch.Tensor, grid: int) -> torch.Tensor:
    """(...,) row-major patch indices of a grid x grid frame -> (..., 2) their centres (column, row) + 0.5, in
    patch widths."""
    return torch.stack([cell % grid, cell // grid], -1).float() + 0.5


def offset_at(offsets: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """offsets (..., N, P, 2), cell (..., N) -> (..., N, 2) the offsets predicted at those patches."""
    return offsets.gather(-2, cell[..., None, None].expand(*cell.shape, 1, 2)).squeeze(-2)


class KeypointHead(nn.Linear):
    """Per patch and object: a logit and the object's offset (2) from the patch centre; grid x grid patches."""

    def __init__(self, width: int, objects: int, grid: int):
        super().__init__(width, 3 * objects)
        self.objects, self.grid = objects, grid

    def outputs(self, frame_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., P, D) hidden states of a frame's patches -> logits (..., N, P) of each object being in a patch
        and its offset (..., N, P, 2) from the patch centre, in patch widths (u right, v down)."""
        out = self(frame_hidden).float()
        N = self.objects
        return out[..., :N].transpose(-1, -2), out[..., N:].unflatten(-1, (N, 2)).transpose(-2, -3)

    def locate(self, frame_hidden: torch.Tensor) -> torch.Tensor:
        """(..., P, D) hidden states of a frame's patches -> (..., N, 2) image (u, v) of the named objects: the
        centre of the likeliest patch plus the offset predicted there."""
        logits, offsets = self.outputs(frame_hidden)
        cell = logits.argmax(-1)  # (..., N)
        return ((cell_centre(cell, self.grid) + offset_at(offsets, cell).clamp(-0.5, 0.5)) / self.grid).clamp(0, 1)


class ObjectReadout(nn.Linear):
    """At a frame's [EOF]: (u, v) - 0.5 of each object."""

    def __init__(self, width: int, objects: int):
        super().__init__(width, 2 * objects)

    def read(self, eof_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) at a frame's [EOF] -> (..., N, 2) image (u, v) of the named objects."""
        uv = self(eof_hidden).float() + 0.5
        return uv.reshape(*uv.shape[:-1], -1, 2)


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
