"""The planner's cost on where things are: image positions (keypoints) the model reads off imagined frames.

A model trained with keypoints (``model.lambda_keypoint``) reads, at each frame's [EOF], the image (u, v) of
the objects the instruction names and of the effector (WorldModel.read_objects). Positions read off a goal
image say where everything should end up; the distance to them falls linearly however far the goal is,
where a pixel cost is flat.

Moving an object needs one more thing that no distance to the goal says: the effector must first get
behind the object, on the side away from its goal, without pushing it the wrong way on the way there. The
pushing prior turns that into a cost, for the named object farthest from its goal position: go to a point
just inside contact behind it, and keep out of a disc around it unless behind. Which object and which
direction come from the current (true) frame's read-out; the object's position comes from the imagined
frame, so a model that imagines the object moving with the effector keeps the target moving with it.
"""
from __future__ import annotations

import torch

BARRIER_WEIGHT = 10.0  # per unit of intrusion into the disc around the object: > 1, so going around wins
BARRIER_MARGIN = 0.04  # of the image side beyond contact: about one chunk of effector motion
PUSH_DEPTH = 0.25  # the pushing target lies this fraction of the contact distance inside contact


def object_cost(objects: torch.Tensor, now: torch.Tensor, goal: torch.Tensor, push_distance: float = 0.0,
                tolerance: float = 0.04) -> torch.Tensor:
    """objects, now, goal: (M, N + 1, 2) image (u, v) of the N named objects then the effector, read off the
    imagined frame, the current frame and the goal image -> (M,) cost in fractions of the image side.

    Without the pushing prior (push_distance 0): the summed distances of every keypoint to its goal position.
    With it (push_distance: block-to-effector distance at contact, as a fraction of the image side): while
    a named object is more than ``tolerance`` from its goal position in the current frame, the effector's
    term is the pushing prior's instead of its distance to its own goal position."""
    named, effector = objects[:, :-1], objects[:, -1]
    cost = (named - goal[:, :-1]).norm(dim=-1).sum(-1)
    reach = (effector - goal[:, -1]).norm(dim=-1)
    if push_distance <= 0:
        return cost + reach
    rows = torch.arange(objects.shape[0], device=objects.device)
    away = goal[:, :-1] - now[:, :-1]  # (M, N, 2) still to go, per object
    far = away.norm(dim=-1)
    j = far.argmax(-1)
    direction = away[rows, j] / far[rows, j].clamp(min=1e-6)[:, None]
    rel = effector - named[rows, j]
    behind = (rel * direction).sum(-1) < -0.5 * push_distance
    target = named[rows, j] - direction * (1 - PUSH_DEPTH) * push_distance
    intrusion = (push_distance + BARRIER_MARGIN - rel.norm(dim=-1)).clamp(min=0) * (~behind)
    push = (effector - target).norm(dim=-1) + BARRIER_WEIGHT * intrusion
    return cost + torch.where(far[rows, j] > tolerance, push, reach)
