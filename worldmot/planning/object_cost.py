"""The planner's cost on where things are: image positions (keypoints) the model reads off imagined frames.

A model trained with keypoints (``model.lambda_keypoint``) places on every frame, real or imagined, the
objects the instruction names and the effector: image (u, v) from its frame patches (WorldModel.locate_objects,
Imagination.objects). Positions placed on a goal
image say where everything should end up; the distance to them falls linearly however far the goal is,
where a pixel cost is flat.

Moving an object needs one more thing that no distance to the goal says: the effector must first get
behind the object, on the side away from its goal, without pushing it the wrong way on the way there. The
pushing prior turns that into a cost, for the object that moves (the instruction's subject, the first named
object: "push the red block onto the green pad"): the length of the way to a point just inside contact
behind it, around the object unless already behind. The direction comes from the current (true) frame's
read-out; the object's position comes from the imagined frame, so a model that imagines the object moving
with the effector keeps the target moving with it. Choosing instead the object farthest from its goal
position sent the effector round the pad: on the goal image the block covers its pad, and the tiny model
then placed the pad at the other pad (Push, seed 100003).
"""
from __future__ import annotations

import torch

BARRIER_WEIGHT = 10.0  # per unit of intrusion into the disc around the object
BARRIER_MARGIN = 0.04  # of the image side beyond contact: about one chunk of effector motion
PUSH_DEPTH = 0.5  # the pushing target lies this fraction of the contact distance inside contact: a model
# that imagines the object standing still under contact still pushes it by this much per replanning step


def around_disc(a: torch.Tensor, b: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """(M, 2) points a, b, centres -> (M,) length of the shortest path from a to b that keeps out of the disc
    (straight where the segment misses it, else tangent, arc, tangent). A plain distance with a barrier has
    a local minimum in front of the disc; this has none (points inside count as on its rim)."""
    ra, rb = a - centre, b - centre
    na, nb = ra.norm(dim=-1), rb.norm(dim=-1)
    angle = torch.acos(((ra * rb).sum(-1) / (na * nb).clamp(min=1e-9)).clamp(-1, 1))
    da, db = na.clamp(min=radius), nb.clamp(min=radius)
    ta, tb = torch.acos(radius / da), torch.acos(radius / db)  # the angles the tangent points subtend
    wrapped = (da ** 2 - radius ** 2).sqrt() + (db ** 2 - radius ** 2).sqrt() + radius * (angle - ta - tb)
    return torch.where(angle > ta + tb, wrapped, (a - b).norm(dim=-1))


def object_cost(objects: torch.Tensor, now: torch.Tensor, goal: torch.Tensor, push_distance: float = 0.0,
                tolerance: float = 0.04, pushed: int = 0) -> torch.Tensor:
    """objects, now, goal: (M, N + 1, 2) image (u, v) of the N named objects then the effector, read off the
    imagined frame, the current frame and the goal image -> (M,) cost in fractions of the image side.

    Without the pushing prior (push_distance 0): the summed distances of every keypoint to its goal position.
    With it (push_distance: object-to-effector distance at contact, as a fraction of the image side): while
    the named object ``pushed`` is more than ``tolerance`` from its goal position in the current frame, the
    effector's term is the way to the pushing position (behind the object, inside contact) instead of the
    distance to its own goal position: straight when behind, else around the object to a point behind it
    first."""
    named, effector = objects[:, :-1], objects[:, -1]
    cost = (named - goal[:, :-1]).norm(dim=-1).sum(-1)
    reach = (effector - goal[:, -1]).norm(dim=-1)
    if push_distance <= 0:
        return cost + reach
    away = goal[:, pushed] - now[:, pushed]  # (M, 2) still to go
    far = away.norm(dim=-1)
    direction = away / far.clamp(min=1e-6)[:, None]
    block = named[:, pushed]
    rel = effector - block
    behind = (rel * direction).sum(-1) < -0.5 * (1 - PUSH_DEPTH) * push_distance  # the target's side, with room
    target = block - direction * (1 - PUSH_DEPTH) * push_distance
    approach = block - direction * (push_distance + BARRIER_MARGIN)
    intrusion = (push_distance - rel.norm(dim=-1)).clamp(min=0)
    detour = (around_disc(effector, approach, block, push_distance + BARRIER_MARGIN / 2)
              + (approach - target).norm(dim=-1) + BARRIER_WEIGHT * intrusion)
    push = torch.where(behind, (effector - target).norm(dim=-1), detour)
    return cost + torch.where(far > tolerance, push, reach)


def lead_distance(effector: torch.Tensor, previous: torch.Tensor, goal: torch.Tensor, chunks: float) -> torch.Tensor:
    """effector, previous, goal: (M, 2) image (u, v) of the effector after a chunk, before it and on the goal
    image -> (M,) distance from the goal of where the effector would be ``chunks`` chunks later at the chunk's
    velocity. An arm under torque keeps moving after the chunk: a cost on where it is now rushes it at the
    goal and past it. With the simulator as the model (Reacher-v5, one-chunk lookahead), CEM reached the
    target in 22 of 30 episodes without this term and 29 of 30 with it (2 chunks, weight 1;
    tools/probes/plan_with_simulator.py)."""
    return (effector + chunks * (effector - previous) - goal).norm(dim=-1)
