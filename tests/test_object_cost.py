"""The planner's keypoint cost and its pushing prior (worldmot/planning/object_cost.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_fixtures import make_model, small_config

from worldmot.errors import WorldmotError
from worldmot.planning import Planner, PlannerConfig
from worldmot.planning.object_cost import around_disc, lead_distance, object_cost

CONTACT = 0.08
DIRECTIONS = torch.tensor([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)],
                          dtype=torch.float32)


def keypoints(block, pad, effector) -> torch.Tensor:
    return torch.tensor([[block, pad, effector]], dtype=torch.float32)


def push(block: torch.Tensor, effector: torch.Tensor) -> torch.Tensor:
    """Frictionless disc contact: the block is pushed out to the contact distance along the line of centres."""
    rel = block - effector
    d = rel.norm(dim=-1, keepdim=True)
    return torch.where(d < CONTACT, effector + rel / d.clamp(min=1e-9) * CONTACT, block)


def greedy_episode(block, pad, effector, steps: int = 120, step: float = 0.03, pad_on_goal=None) -> float:
    """One-step lookahead over 16 directions with a perfect model of the contact; the block's final distance.
    pad_on_goal: where the pad is read off the goal image (default: where it is)."""
    block, pad, effector = (torch.tensor(x, dtype=torch.float32) for x in (block, pad, effector))
    read_pad = pad if pad_on_goal is None else torch.tensor(pad_on_goal, dtype=torch.float32)
    goal = torch.stack([pad, read_pad, pad - CONTACT * (pad - block) / (pad - block).norm()])[None]
    for _ in range(steps):
        now = torch.stack([block, pad, effector])[None]
        moved = effector + step * DIRECTIONS
        after = push(block.expand(16, 2), moved)
        imagined = torch.stack([after, pad.expand(16, 2), moved], 1)
        cost = object_cost(imagined, now.expand(16, -1, -1), goal.expand(16, -1, -1), CONTACT, 0.02)
        best = int(cost.argmin())
        effector, block = moved[best], after[best]
    return float((block - pad).norm())


def test_without_the_prior_each_keypoint_is_priced_by_its_distance_to_its_goal():
    goal = keypoints([0.5, 0.5], [0.5, 0.5], [0.2, 0.2])
    near = keypoints([0.5, 0.6], [0.5, 0.5], [0.2, 0.2])
    far = keypoints([0.5, 0.9], [0.5, 0.5], [0.2, 0.2])
    assert object_cost(goal, goal, goal) == pytest.approx(0.0)
    assert object_cost(near, near, goal) == pytest.approx(0.1, abs=1e-6)
    assert object_cost(far, far, goal) == pytest.approx(0.4, abs=1e-6)  # linear: not flat when far


def test_the_prior_sends_the_effector_behind_the_block_not_through_it():
    block, pad = [0.5, 0.5], [0.8, 0.5]  # push along +u
    goal = keypoints(pad, pad, [0.72, 0.5])
    now = keypoints(block, pad, [0.65, 0.5])  # the effector starts on the pad's side
    grid = torch.stack(torch.meshgrid(torch.linspace(0.1, 0.9, 81), torch.linspace(0.1, 0.9, 81), indexing="ij"), -1)
    effectors = grid.reshape(-1, 2)
    M = len(effectors)
    imagined = torch.cat([torch.tensor([block, pad]).expand(M, 2, 2), effectors[:, None]], 1)
    cost = object_cost(imagined, now.expand(M, -1, -1), goal.expand(M, -1, -1), CONTACT, 0.02)
    best = effectors[cost.argmin()]
    assert best[0] < 0.5 - 0.5 * CONTACT and abs(best[1] - 0.5) < 0.02  # behind the block, on its line
    in_front = object_cost(keypoints(block, pad, [0.58, 0.5]), now, goal, CONTACT, 0.02)
    beside = object_cost(keypoints(block, pad, [0.5, 0.64]), now, goal, CONTACT, 0.02)
    assert in_front > beside  # touching the block on the pad's side costs more than going round it


def test_an_object_at_its_goal_leaves_the_effector_to_its_own_goal_position():
    pad = [0.8, 0.5]
    goal = keypoints(pad, pad, [0.72, 0.5])
    done = keypoints([0.81, 0.5], pad, [0.3, 0.3])
    there = keypoints([0.81, 0.5], pad, [0.72, 0.5])
    assert object_cost(there, done, goal, CONTACT, 0.02) < object_cost(done, done, goal, CONTACT, 0.02)
    assert object_cost(there, done, goal, CONTACT, 0.02) == pytest.approx(0.01, abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_greedy_planning_on_the_cost_pushes_the_block_home_from_any_side(seed):
    rng = np.random.default_rng(seed)
    block, pad = rng.uniform(0.3, 0.7, 2), rng.uniform(0.2, 0.8, 2)
    while np.linalg.norm(pad - block) < 0.2:
        pad = rng.uniform(0.2, 0.8, 2)
    angle = rng.uniform(0, 2 * np.pi)
    effector = block + 0.18 * np.array([np.cos(angle), np.sin(angle)])  # any side, the pad's included
    assert greedy_episode(block, pad, effector) < 0.03


def test_the_block_is_pushed_home_when_the_pad_is_misplaced_on_the_goal_image():
    """On the goal image the block covers its pad, and a model may place the pad elsewhere (the other pad):
    the prior still pushes the instruction's subject, not the object that looks farthest from its goal."""
    block, pad = np.array([0.66, 0.45]), np.array([0.32, 0.35])
    assert greedy_episode(block, pad, block + [0.15, 0.0], pad_on_goal=[0.66, 0.78]) < 0.03


def settle(start, goal, lead_chunks: float, steps: int = 40, accel: float = 0.01) -> np.ndarray:
    """A point mass under force (a torque-driven arm's tip, simplified), one-step lookahead over 16 full
    pushes and none, each priced by its distance to the goal plus, with lead_chunks > 0, the lead term:
    the distances to the goal over the last 5 steps."""
    pushes = torch.cat([DIRECTIONS, torch.zeros(1, 2)])
    p, v, g = torch.tensor(start, dtype=torch.float32), torch.zeros(2), torch.tensor(goal, dtype=torch.float32)
    distances = []
    for _ in range(steps):
        v_next = v + accel * pushes
        p_next = p + v_next
        cost = (p_next - g).norm(dim=-1)
        if lead_chunks:
            cost = cost + lead_distance(p_next, p.expand_as(p_next), g.expand_as(p_next), lead_chunks)
        best = int(cost.argmin())
        p, v = p_next[best], v_next[best]
        distances.append(float((p - g).norm()))
    return np.array(distances[-5:])


def test_the_lead_term_brings_a_moving_effector_to_rest_on_its_goal():
    rng = np.random.default_rng(0)
    overshoots = 0
    for _ in range(10):
        start, goal = rng.uniform(0.1, 0.9, 2), rng.uniform(0.1, 0.9, 2)
        assert settle(start, goal, 2.0).max() < 0.01
        overshoots += settle(start, goal, 0.0).max() > 0.02  # a cost on where it is only: it swings past
    assert overshoots >= 5


def test_lead_chunks_must_not_be_negative():
    with pytest.raises(WorldmotError, match="plan.lead_chunks=-1"):
        Planner(make_model(small_config(keypoints=2)), PlannerConfig(cost="goal", object_weight=1.0, lead_chunks=-1),
                -np.ones(2), np.ones(2))


def test_object_weight_needs_a_model_that_reads_keypoints():
    with pytest.raises(WorldmotError, match="plan.object_weight=1.0: the model reads no keypoints"):
        Planner(make_model(small_config()), PlannerConfig(cost="goal", object_weight=1.0), -np.ones(2), np.ones(2))


def test_push_object_must_be_one_of_the_named_objects():
    model = make_model(small_config(keypoints=2))  # one named object, then the effector
    cfg = PlannerConfig(cost="goal", object_weight=1.0, push_distance=CONTACT, push_object=1)
    with pytest.raises(WorldmotError, match=r"plan.push_object=1: the model places 1 named object\(s\), expected 0 to 0"):
        Planner(model, cfg, -np.ones(2), np.ones(2))


def test_the_planner_prices_keypoints_read_off_imagined_frames():
    model = make_model(small_config(keypoints=2))
    cfg = PlannerConfig(cost="goal", object_weight=1.0, push_distance=CONTACT, candidates=4, elites=2, horizon=1)
    planner = Planner(model, cfg, -np.ones(2), np.ones(2))
    rng = np.random.default_rng(0)
    frames, goals = (rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    tasks = ["push the red block onto the blue pad"] * 2
    plain = Planner(model, PlannerConfig(cost="goal", candidates=4, elites=2, horizon=1), -np.ones(2), np.ones(2))
    actions = planner.plan(tasks, frames, None, goals)
    assert actions.shape == (2, cfg.execute * model.cfg.sequence.chunk, 2) and np.isfinite(actions).all()
    plain.plan(tasks, frames, None, goals)
    assert not torch.allclose(planner.last.scores, plain.last.scores)  # the keypoint term is in the score


def test_the_planner_prices_the_positions_predicted_ahead_where_the_model_has_them():
    cfg_model = small_config(keypoints=2)
    cfg_model.lambda_keypoint_ahead = 1.0
    model = make_model(cfg_model)
    rng = np.random.default_rng(0)
    frames, goals = (rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    tasks = ["reach the red target"] * 2
    scores = {}
    for predicted in (True, False):
        cfg = PlannerConfig(cost="goal", object_weight=1.0, candidates=4, elites=2, horizon=1, predicted_objects=predicted)
        planner = Planner(model, cfg, -np.ones(2), np.ones(2))
        planner.plan(tasks, frames, None, goals)
        scores[predicted] = planner.last.scores
    assert not torch.allclose(scores[True], scores[False])  # the prediction at [EOA], not the imagined frame's


def segment_misses_disc(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: float) -> bool:
    t = np.clip(np.dot(c - a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0, 1)
    return np.linalg.norm(a + t * (b - a) - c) >= r


coordinate = st.floats(-1, 1, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.tuples(coordinate, coordinate), st.tuples(coordinate, coordinate), st.floats(0.05, 0.3))
def test_the_way_around_a_disc_is_never_shorter_than_straight_and_is_straight_when_clear(a, b, radius):
    a, b = np.array(a), np.array(b)
    centre = np.zeros(2)
    if min(np.linalg.norm(a), np.linalg.norm(b)) < radius + 1e-3:
        return  # both ends outside the disc
    ta, tb, tc = (torch.tensor(x, dtype=torch.float64)[None] for x in (a, b, centre))
    way = float(around_disc(ta, tb, tc, radius))
    assert way == pytest.approx(float(around_disc(tb, ta, tc, radius)), abs=1e-9)
    straight = np.linalg.norm(a - b)
    if segment_misses_disc(a, b, centre, radius):
        assert way == pytest.approx(straight, abs=1e-9)
    else:
        assert way >= straight - 1e-9


def test_the_way_round_from_the_far_side_is_two_tangents_and_an_arc():
    d, r = 0.3, 0.1
    way = around_disc(torch.tensor([[-d, 0.0]]), torch.tensor([[d, 0.0]]), torch.zeros(1, 2), r)
    expected = 2 * np.sqrt(d * d - r * r) + r * (np.pi - 2 * np.arccos(r / d))
    assert float(way) == pytest.approx(expected, rel=1e-6)


def test_the_effector_can_be_sent_onto_a_named_object_on_the_goal_image():
    # Reacher: on the goal image the fingertip covers the target, and the model places the target better
    goal = torch.tensor([[[0.2, 0.3], [0.5, 0.5]], [[0.7, 0.1], [0.6, 0.2]]])  # (B, target + effector, 2)
    moved = Planner._effector_onto(goal, 0)
    torch.testing.assert_close(moved, torch.tensor([[[0.2, 0.3], [0.2, 0.3]], [[0.7, 0.1], [0.7, 0.1]]]))
    with pytest.raises(WorldmotError, match=r"plan.effector_goal=1: the model places 1 named object"):
        Planner._effector_onto(goal, 1)
    with pytest.raises(WorldmotError, match="plan.effector_goal=-2"):
        PlannerConfig(effector_goal=-2).check(n_steps=3)
    with pytest.raises(WorldmotError, match="plan.pixel_weight=-1"):
        PlannerConfig(pixel_weight=-1).check(n_steps=3)


def test_the_planner_prices_the_effector_at_its_goal_object():
    model = make_model(small_config(keypoints=2))
    rng = np.random.default_rng(0)
    frames, goals = (rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    scores = {}
    for k in (-1, 0):
        cfg = PlannerConfig(cost="goal", object_weight=1.0, candidates=4, elites=2, horizon=1, effector_goal=k)
        planner = Planner(model, cfg, -np.ones(2), np.ones(2))
        planner.plan(["reach the red target"] * 2, frames, None, goals)
        scores[k] = planner.last.scores
    assert not torch.allclose(scores[0], scores[-1])
