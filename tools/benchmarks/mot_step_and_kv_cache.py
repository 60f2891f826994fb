"""The MoT core's step and KV-cache rows of BENCHMARKS.md (MoT vs dense).

1. training step time: full MoT vs two-path vs dense (equal active parameters), same batch, interleaved
   in one run, median of --repeats;
2. imagination with vs without the KV cache: a 4-frame rollout, 4 flow steps, 64 candidates;
3. imagined frames per second for the tiny config (batched candidates, 1 and 4 flow steps).

    python tools/benchmarks/mot_step_and_kv_cache.py [--model tiny] [--batch 16] [--repeats 5] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from harness import EXPERTS, build, random_batch, sync

from worldmot.model import imagination
from worldmot.model.world_model import WorldModel
from worldmot.training.losses import WorldModelLoss


def bench_training(args) -> None:
    models = {name: build(args.model, e, args.device) for name, e in EXPERTS.items()}
    opts = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in models.items()}
    objectives = {n: WorldModelLoss(m) for n, m in models.items()}
    batch = random_batch(next(iter(models.values())), args.batch).to(args.device)
    times = {n: [] for n in models}
    tokens = batch.token_ids.numel()
    for r in range(args.repeats + 1):  # first round is warm-up
        for name, m in models.items():
            sync(args.device)
            t0 = time.perf_counter()
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
                loss = objectives[name](batch)["loss"]
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            sync(args.device)
            if r:
                times[name].append(time.perf_counter() - t0)
    dense = statistics.median(times["dense"])
    print(f"\n## Training step ({args.model}, batch {args.batch}, {tokens // args.batch} tokens/sample, {args.device})")
    print("| model | params | step (median) | tokens/s | step / dense |\n|---|---|---|---|---|")
    for name, m in models.items():
        med = statistics.median(times[name])
        params = sum(p.numel() for p in m.parameters())
        print(f"| {name} | {params / 1e6:.2f}M | {med * 1000:.0f} ms | {tokens / med:,.0f} | {med / dense:.3f} |")


class WithoutCache:
    """The baseline: the model as imagination sees it, except that every ``run`` first recomputes the whole
    prefix (everything appended so far) instead of reading it from a KV cache. A stand-in handed to
    imagination.start in the model's place; every other attribute is the model's own."""

    def __init__(self, model: WorldModel):
        self.model, self.history = model, []

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def run(self, seg, inp, cache=None, append=False):
        prefix = None
        for s, i in self.history:
            _, prefix = self.model.run(s, i, cache=prefix, append=True)
        out, _ = self.model.run(seg, inp, cache=prefix, append=False)
        if append:
            self.history.append((seg, inp))
        return out, None


def bench_imagination(args) -> None:
    model = build(args.model, EXPERTS["full MoT"], args.device).eval()
    s = model.cfg.sequence
    N, H = args.candidates, 4
    frame0 = model.tokenize_frames(np.random.default_rng(0).integers(0, 256, (s.image_size, s.image_size, 3), dtype=np.uint8))
    actions = torch.rand(N, H, s.chunk, s.action_dim) * 2 - 1
    noise = torch.randn(N, H, model.tokens_per_frame, model.frame_tokenizer.token_dim, device=args.device)

    def cached(flow_steps, model=model):
        im = imagination.start(model, ["reach the red target"] * N, frame0[None].expand(N, -1, -1), horizon=H)
        for h in range(H):
            imagination.write_step(im, actions[:, h])
            imagination.imagine_frame(im, flow_steps, noise=noise[:, h : h + 1])
        return torch.stack(im.frames, 1)

    t_cache, t_nocache = [], []
    for r in range(args.repeats + 1):
        sync(args.device)
        t0 = time.perf_counter()
        a = cached(4)
        sync(args.device)
        t1 = time.perf_counter()
        b = cached(4, model=WithoutCache(model))
        sync(args.device)
        t2 = time.perf_counter()
        if r:
            t_cache.append(t1 - t0), t_nocache.append(t2 - t1)
    err = float((a - b).abs().max())
    mc, mn = statistics.median(t_cache), statistics.median(t_nocache)
    print(f"\n## Imagination: {N} candidates x {H} frames, 4 flow steps ({args.model}, {args.device})")
    print("| path | time (median) | imagined frames/s |\n|---|---|---|")
    print(f"| KV cache | {mc * 1000:.0f} ms | {N * H / mc:,.0f} |")
    print(f"| no cache (every call recomputes the prefix) | {mn * 1000:.0f} ms | {N * H / mn:,.0f} |")
    print(f"speed-up with the cache: {mn / mc:.2f}x   (max |difference| of the frames: {err:.1e})")
    t1s = []
    for r in range(args.repeats + 1):
        sync(args.device)
        t0 = time.perf_counter()
        cached(1)
        sync(args.device)
        if r:
            t1s.append(time.perf_counter() - t0)
    m1 = statistics.median(t1s)
    print(f"1 flow step: {m1 * 1000:.0f} ms for {N * H} frames = {N * H / m1:,.0f} imagined frames/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--candidates", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=["train", "imagine"], default=None)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    if args.only in (None, "train"):
        bench_training(args)
    if args.only in (None, "imagine"):
        bench_imagination(args)


if __name__ == "__main__":
    main()
