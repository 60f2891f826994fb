"""Training throughput: tokens/s of a training step and its fraction of the machine's matmul rate, in one run.

1. the machine's fp32 (CPU) or bf16 (CUDA) matmul rate on square matrices (median of --repeats);
2. one training step (forward, backward, AdamW) of a model config on a synthetic batch: its time with
   --repeats steps queued back to back as the training loop runs them (median of 3 such runs; also the median
   of single steps each waited for, which adds the host's time to start a step on a GPU), tokens/s, FLOPs
   counted by torch's FlopCounterMode (matmuls and attention; the CPU's attention kernel with the CUDA
   kernels' formula, which torch lacks), and achieved/measured rate;
3. with --dataset DIR: the whole ``worldmot train`` loop (loader workers, packing, EMA, logging) for
   --loop-steps steps, tokens/s as the loop reports it.

    python tools/benchmarks/train_throughput.py [--model tiny] [--batch 16] [--repeats 5] [--dataset DIR] [--device cpu|cuda] [--compile [layer|blocks]]
                                [--attention flex --flex-tile 64]
                                [--set KEY=VALUE ...]   # model config overrides
                                [--peak-tflops 989]   # CUDA: the GPU's dense bf16 peak, for MFU
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from harness import EXPERTS, build, count_cpu_attention, print_profile, random_batch, sync

from worldmot.training.losses import WorldModelLoss


def matmul_rate(device: str, repeats: int, n: int = 2048) -> float:
    """Median FLOP/s of n x n matmuls (fp32 on the CPU, bf16 on CUDA)."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    inner = 50 if device == "cuda" else 4
    rates = []
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        rates.append(inner * 2 * n**3 / (time.perf_counter() - t0))
    return statistics.median(rates[1:])


def step_flops(args, batch) -> int:
    """FLOPs of one training step (forward and backward), counted eagerly (the compiled graph does the same
    matmuls) with attention over the whole n x n product whichever kernel computes it: query tiles and flex
    tiles skip what the mask rules out, so the count runs on a twin of the model without query tiles."""
    twin = build(args.model, EXPERTS[args.experts], args.device, overrides=[*args.set, "attention_query_tile=0"])
    count_cpu_attention()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
            loss = WorldModelLoss(twin)(batch)["loss"]
        loss.backward()
    return counter.get_total_flops()


def step_rate(args) -> dict:
    model = build(args.model, EXPERTS[args.experts], args.device, overrides=args.set)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")
    batch = random_batch(model, args.batch).to(args.device)
    autocast = dict(device_type=args.device, dtype=torch.bfloat16, enabled=args.device == "cuda")

    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    attention = lambda: sdpa_kernel(backends[args.sdpa]) if args.sdpa else contextlib.nullcontext()

    objective = WorldModelLoss(model)

    def step() -> None:
        with torch.autocast(**autocast), attention():
            loss = objective(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        with attention():
            loss.backward()
        opt.step()

    flops = step_flops(args, batch)
    if args.compile:  # as `worldmot train compile=true compile_scope=S` does
        model.trunk.compile(args.compile, attention=args.attention, flex_tile=args.flex_tile,
                            **({"mode": args.compile_mode} if args.compile_mode else {}))
        step()  # compiles
    synced = []
    for _ in range(args.repeats + 1):  # the first is a warm-up
        sync(args.device)
        t0 = time.perf_counter()
        step()
        sync(args.device)
        synced.append(time.perf_counter() - t0)
    queued = []  # as the training loop runs: the host queues the next step while the GPU runs this one
    for _ in range(3):
        sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            step()
        sync(args.device)
        queued.append((time.perf_counter() - t0) / args.repeats)
    if args.profile:
        print_profile(step, args.device)
    t = statistics.median(queued)
    tokens = batch.token_ids.numel()
    return {"step_s": t, "synced_step_s": statistics.median(synced[1:]), "tokens_per_step": tokens,
            "tokens_per_s": tokens / t, "flops_per_step": flops,
            "achieved_flops": flops / t, "params": sum(p.numel() for p in model.parameters())}


def loop_rate(args) -> float:
    """Median tokens/s the training loop itself reports over --loop-steps steps (the first rows dropped)."""
    from worldmot.training.settings import load_train_config as parse
    from worldmot.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        compiled = [f"compile={bool(args.compile)}", f"compile_scope={args.compile or 'layer'}", f"attention={args.attention}"]
        cfg = parse([f"data.root={args.dataset}", f"run_dir={tmp}/run", f"model={args.model}", *compiled,
                     f"batch_size={args.batch}", f"steps={args.loop_steps}", "log_every=5", f"device={args.device}",
                     *(f"model.{o}" for o in args.set)])
        cfg.val.every = cfg.checkpoint_every = 10**9  # validation and a checkpoint only after the last step
        train(cfg)
        rows = [json.loads(l) for l in Path(tmp, "run", "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r][2:]
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--experts", default="full MoT", choices=list(EXPERTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model config overrides, e.g. --set fp32_residual=true block_bias=true")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the accelerator's dense peak, for MFU")
    p.add_argument("--compile", nargs="?", const="layer", default="", choices=["layer", "blocks"],
                   help="time the torch.compile'd trunk (MoTTrunk.compile scope; default layer)")
    p.add_argument("--sdpa", default="", choices=["", "cudnn", "efficient", "math"],
                   help="restrict scaled_dot_product_attention to this backend (default: torch's choice)")
    p.add_argument("--compile-mode", default="", help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "flex"], help="with --compile layer: the "
                   "attention kernel (flex: on the mask's tiles; FLOPs still counted as SDPA's whole product)")
    p.add_argument("--flex-tile", type=int, default=128, help="the flex block mask's tile (64 needs "
                   "--compile-mode max-autotune-no-cudagraphs for its backward on an H100)")
    p.add_argument("--profile", action="store_true", help="also print the ops that take the most time")
    p.add_argument("--dataset", default="", help="also time the whole training loop on this dataset")
    p.add_argument("--loop-steps", type=int, default=40)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    peak = matmul_rate(args.device, args.repeats)
    s = step_rate(args)
    kind = "bf16" if args.device == "cuda" else "fp32"
    print(f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"measured {kind} matmul rate (2048^3): {peak / 1e9:,.1f} GFLOP/s")
    variant = "".join(", " + o for o in args.set)
    if args.compile:
        variant += f", compiled {args.compile} {args.compile_mode}".rstrip()
    if args.sdpa:
        variant += f", sdpa {args.sdpa}"
    if args.compile and args.attention == "flex":
        variant += f", flex attention in {args.flex_tile}-tiles"
    print(f"{args.model} ({args.experts}{variant}, {s['params'] / 1e6:.2f}M parameters), batch {args.batch} x "
          f"{s['tokens_per_step'] // args.batch} tokens: step {s['step_s'] * 1e3:.0f} ms ({args.repeats} steps queued back "
          f"to back, median of 3 runs; {s['synced_step_s'] * 1e3:.0f} ms waiting for each, median of {args.repeats}), "
          f"{s['tokens_per_s']:,.0f} tokens/s, {s['flops_per_step'] / 1e9:.1f} GFLOP/step, "
          f"{s['achieved_flops'] / 1e9:,.1f} GFLOP/s = {s['achieved_flops'] / peak:.0%} of the measured matmul rate")
    if args.peak_tflops:
        print(f"MFU against the {args.peak_tflops:g} TFLOP/s peak: {s['achieved_flops'] / (args.peak_tflops * 1e12):.1%}")
    if args.dataset:
        tps = loop_rate(args)
        print(f"whole training loop on {args.dataset}: {tps:,.0f} tokens/s "
              f"({tps / s['tokens_per_s']:.0%} of the bare step)")


if __name__ == "__main__":
    main()
