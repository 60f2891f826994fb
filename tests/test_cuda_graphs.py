"""CUDA graphs of imagination forwards (worldmot/model/cuda_graphs.py) compute what the eager forwards do.

GPU only: skipped where torch sees no CUDA device (CI); run on a GPU machine with ``pytest tests/test_cuda_graphs.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import make_model, small_config

from worldmot.model import imagination
from worldmot.model.cuda_graphs import GraphedRuns, use_cuda_graphs
from worldmot.planning import Planner, PlannerConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def cuda_model():
    return make_model(small_config(keypoints=2)).cuda()


def rollout(model, frames: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor) -> dict:
    """Context, a written chunk, one imagined frame, twice over: the second pass replays the graphs."""
    out = {}
    for _ in range(2):
        im = imagination.start(model, ["reach the red target"] * len(frames), frames, horizon=2)
        imagination.write_step(im, actions)
        frame = imagination.imagine_frame(im, flow_steps=2, noise=noise)
        out = {"frame": frame, "hidden": im.last_hidden, "keys": im.caches[0].keys[-1], "objects": im.objects,
               "progress": im.progress()}
    return out


def test_graph_replays_match_eager_imagination():
    model = cuda_model()
    s = model.cfg.sequence
    g = torch.Generator().manual_seed(0)
    frames = model.tokenize_frames(np.random.default_rng(0).integers(0, 256, (3, s.image_size, s.image_size, 3), dtype=np.uint8))
    actions = torch.rand(3, s.chunk, s.action_dim, generator=g) * 2 - 1
    noise = torch.randn(3, 1, *frames.shape[1:], generator=g)
    with torch.no_grad():
        eager = rollout(model, frames, actions, noise)
        use_cuda_graphs(model)
        graphed = rollout(model, frames, actions, noise)
        runner = model.inference_runner
        assert isinstance(runner, GraphedRuns) and len(runner.runs) >= 4  # start, write, noisy frame, append
        # fresh inputs through the same graphs: the replay reads the new inputs, not the captured ones
        other = rollout(model, frames.flip(0), actions.flip(0), noise.flip(0))
        use_cuda_graphs(model, False)
        other_eager = rollout(model, frames.flip(0), actions.flip(0), noise.flip(0))
    for key in eager:
        torch.testing.assert_close(graphed[key], eager[key], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(other[key], other_eager[key], rtol=1e-4, atol=1e-5)


def test_graphed_planner_scores_candidates_as_the_eager_one():
    """bf16 autocast as the planner runs it; one CEM iteration so that both score the same candidates (AR
    proposals among them: sampled from the same probabilities, they are the same chunks)."""
    model = cuda_model()
    s = model.cfg.sequence
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, s.image_size, s.image_size, 3), dtype=np.uint8)
    goals = rng.integers(0, 256, frames.shape, dtype=np.uint8)
    states = rng.normal(size=(2, s.state_dim)).astype(np.float32)
    scores = {}
    for graphs in (False, True):
        cfg = PlannerConfig(cost="goal", horizon=1, candidates=16, iterations=1, elites=4, object_weight=10.0,
                            state_weight=1.0, ar_proposals=4, cuda_graphs=graphs)
        planner = Planner(model, cfg, -np.ones(s.action_dim), np.ones(s.action_dim))
        for _ in range(2):  # captures, then replays
            planner.reset()
            planner.plan(["reach the red target"] * 2, frames, states, goals)
        scores[graphs] = planner.last.scores
    assert isinstance(model.inference_runner, GraphedRuns)
    torch.testing.assert_close(scores[True], scores[False], rtol=1e-2, atol=1e-3)


def test_graphed_token_by_token_decoding_matches_eager():
    """The AR policy and the planner's AR proposals append one token per forward: a graph per position."""
    model = cuda_model()
    s = model.cfg.sequence
    frames = model.tokenize_frames(np.random.default_rng(2).integers(0, 256, (2, s.image_size, s.image_size, 3), dtype=np.uint8))
    written = {}
    with torch.no_grad():
        for graphs in (False, True, True):  # eager, capture, replay
            use_cuda_graphs(model, graphs)
            im = imagination.start(model, ["reach the red target"] * 2, frames, horizon=1)
            actions, texts = imagination.write_step(im, None, reason=True)
            written[graphs] = (actions, texts, im.last_hidden)
    assert written[True][1] == written[False][1]
    torch.testing.assert_close(written[True][0], written[False][0])
    torch.testing.assert_close(written[True][2], written[False][2], rtol=1e-4, atol=1e-5)
