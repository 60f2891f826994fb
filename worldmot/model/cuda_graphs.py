"""CUDA graphs of the world model's inference forwards: one captured graph per call signature, replayed.

Installed from outside the model: :func:`use_cuda_graphs` sets ``WorldModel.inference_runner``, which
``WorldModel.run`` calls instead of its eager forward when no gradient is wanted.

Planning is many small forwards of a small model: on a GPU the CPU spends far longer launching a
replanning step's kernels than the GPU spends running them. A graph replays a whole
``WorldModel.run`` (embedding, every layer, every expert) as one launch. Shapes are static per signature
(segment, batch, cache length), so each signature is captured once, at its first call, and replayed after.

Inputs are copied into the graph's own buffers before a replay and outputs cloned out after it: callers
keep caches across calls (the context is shared by every candidate and both CEM iterations), so a graph
must not hand out memory that its next replay overwrites. All graphs share one memory pool: they replay
one at a time on one stream and hold no intermediate across replays. Each graph keeps its own inputs and
outputs allocated (for a call that extends a cache, the extended cache), so memory grows with the number of
signatures: small for the tiny model's planners (a handful), large for a big model decoding token by token
(a signature per position); ``plan.cuda_graphs=false`` runs eagerly.

Written here rather than taken from ``torch.compile(mode="reduce-overhead")``: compiling the trunk's
blocks made planning slower (guards checked on many small calls), and the calls' Python structures
(segments, caches, optional inputs) would each be guards; a graph per signature needs none.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from worldmot.model.mot import KVCache

if TYPE_CHECKING:
    from worldmot.model.world_model import SegmentInputs, WorldModel
    from worldmot.sequence import Segment


def _signature(t: torch.Tensor | None) -> tuple | None:
    return None if t is None else (tuple(t.shape), t.dtype)


@dataclass
class CapturedRun:
    """One graph of ``WorldModel.run`` with its static input and output tensors."""

    graph: torch.cuda.CUDAGraph
    segment: Segment  # held so that the layout behind the signature's id stays alive
    inputs: SegmentInputs
    cache: KVCache | None
    hidden: torch.Tensor
    new_cache: KVCache | None

    def replay(self, inp: SegmentInputs, cache: KVCache | None) -> tuple[torch.Tensor, KVCache | None]:
        for f in fields(inp):
            src = getattr(inp, f.name)
            if src is not None:
                getattr(self.inputs, f.name).copy_(src)
        if cache is not None:
            for dst, src in zip(self.cache.keys + self.cache.values, cache.keys + cache.values):
                dst.copy_(src)
            self.cache.mask_blocks.copy_(cache.mask_blocks)
        self.graph.replay()
        out = self.new_cache
        if out is None:
            return self.hidden.clone(), cache
        return self.hidden.clone(), KVCache([k.clone() for k in out.keys], [v.clone() for v in out.values],
                                            out.mask_blocks.clone())


def use_cuda_graphs(model: WorldModel, enabled: bool = True) -> None:
    """Replay ``model``'s inference forwards as CUDA graphs; a no-op off CUDA. Graphs captured on the model's
    device are kept (a new planner over the same model reuses them); ``enabled=False`` runs eagerly."""
    runner = model.inference_runner
    if not enabled or model.device.type != "cuda":
        model.inference_runner = None
    elif not isinstance(runner, GraphedRuns) or runner.device != model.device:
        model.inference_runner = GraphedRuns(model)


class GraphedRuns:
    """``WorldModel.run`` for inference through captured graphs (call like ``model.run``); inputs off CUDA run
    eagerly."""

    def __init__(self, model: WorldModel):
        self.model, self.device = model, model.device
        self.runs: dict[tuple, CapturedRun] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def key(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None, append: bool) -> tuple:
        autocast = torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda")
        cache_sig = None if cache is None else (cache.length, _signature(cache.keys[0]))
        return (seg.key, append, autocast, cache_sig) + tuple(_signature(getattr(inp, f.name)) for f in fields(inp))

    def __call__(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None = None,
                 append: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        if not inp.token_ids.is_cuda:
            return self.model.eager_run(seg, inp, cache, append)
        key = self.key(seg, inp, cache, append)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = self.capture(seg, inp, cache, append)
        return run.replay(inp, cache)

    def capture(self, seg: Segment, inp: SegmentInputs, cache: KVCache | None, append: bool) -> CapturedRun:
        """Warm up on a side stream (as torch.cuda.graphs asks), then capture one ``model.run`` on copies of
        the inputs. Autocast's weight-cast cache is off while capturing: a cached cast made outside the graph
        would be freed when autocast exits, and the graph would read freed memory."""
        static = type(inp)(**{f.name: None if getattr(inp, f.name) is None else getattr(inp, f.name).clone()
                              for f in fields(inp)})
        static_cache = None if cache is None else KVCache([k.clone() for k in cache.keys], [v.clone() for v in cache.values],
                                                          cache.mask_blocks.clone())
        dtype = torch.get_autocast_dtype("cuda")
        autocast = torch.autocast("cuda", dtype=dtype, enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast:
            for _ in range(2):
                self.model.eager_run(seg, static, static_cache, append)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), autocast:
            hidden, new_cache = self.model.eager_run(seg, static, static_cache, append)
        return CapturedRun(graph, seg, static, static_cache, hidden, new_cache if append else None)
