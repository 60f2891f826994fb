"""Attention of one training window's mask, alone: SDPA with the boolean mask against flex attention on the
mask's tiles and SDPA in query tiles, forward and backward (BENCHMARKS.md's attention paths).

1. the mask of a config's training window in the trunk's routed order: allowed entries, and the tiles that
   flex attention computes at 64 and 128 (the routed order, frame expert first, against the alphabetical
   order of the experts);
2. on the device: median time of attention forward + backward on random (B, H, n, dh) bf16 inputs (CPU:
   fp32, forward only: torch has no flex backward there) for SDPA with the mask, SDPA without a mask (what
   the dense kernel costs: a floor the mask cannot beat), SDPA in query tiles over the run of keys that
   covers what each may see (model.attention_query_tile), and compiled flex attention per tile size, with their rates counting the whole
   n x n product (as train_throughput.py's MFU does) and the computed part.

    python tools/benchmarks/attention_paths.py [--model base] [--batch 256] [--device cuda] [--repeats 10]
                                               [--tiles 128 64] [--autotune]   # flex candidates include small tiles
                                               [--query-tiles 64 128]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from harness import EXPERTS, build, random_batch, sync

from worldmot.model.mot import build_routing, computed_tiles
from worldmot.model.query_tiles import computed_fraction, tiled_attention


def forward_tiles(mask) -> dict[str, int]:
    """Forward kernel tiles no larger than the block mask's, as the trunk asks for them: inductor's default
    for bf16 on an H100 is 128 x 128, which a 64-entry block mask refuses."""
    t = min(mask.BLOCK_SIZE)
    return {"fwd_BLOCK_M": t, "fwd_BLOCK_N": t} if t < 128 else {}


def routings(model_name: str, device: str):
    """The routing of a training window of the config (narrowed: only the layout matters), and the routing
    in the experts' alphabetical order."""
    model = build(model_name, EXPERTS["full MoT"], "cpu", width=64, heads=1, depth=1)
    layout = random_batch(model, 1).layout
    seg = layout.segment(0, layout.length)
    trunk = model.trunk
    return (build_routing(seg, trunk.experts, trunk.routing_order, torch.device(device)),
            build_routing(seg, trunk.experts, trunk.expert_names, torch.device(device)))


def median_time(fn, device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--tiles", type=int, nargs="+", default=[128, 64])
    p.add_argument("--autotune", action="store_true", help="compile flex with mode max-autotune-no-cudagraphs")
    p.add_argument("--query-tiles", type=int, nargs="*", default=[64, 128], help="query tile sizes (model.attention_query_tile)")
    args = p.parse_args()

    route, alphabetical = routings(args.model, args.device)
    n = int(route.mask.shape[0])
    print(f"{args.model}: a training window of {n} tokens, {float(route.mask.float().mean()):.0%} of the mask allowed")
    for tile in (64, 128):
        print(f"  {tile} x {tile} tiles computed: routed order {computed_tiles(route.flex_mask(tile)):.0%}, "
              f"alphabetical order of the experts {computed_tiles(alphabetical.flex_mask(tile)):.0%}")
    for size in args.query_tiles:
        tiles = route.query_tiles(size)
        print(f"  {size}-row query tiles: {computed_fraction(tiles):.0%} of the n x n product, {len(tiles.tiles)} "
              f"SDPA calls, {sum(c.mask is None for c in tiles.tiles)} of them without a mask")

    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    shape = (args.batch, args.heads, n, args.head_dim)
    q, k, v = (torch.randn(shape, device=args.device, dtype=dtype, requires_grad=cuda) for _ in range(3))
    grad = torch.randn(shape, device=args.device, dtype=dtype)
    dense_flops = 4 * args.batch * args.heads * n * n * args.head_dim * (3.5 if cuda else 1)  # backward: 2.5x

    def timed(attend) -> float:
        def run():
            out = attend(q, k, v)
            if cuda:
                torch.autograd.grad(out, (q, k, v), grad)
        with torch.no_grad() if not cuda else torch.enable_grad():
            return median_time(run, args.device, args.repeats)

    rows = [("SDPA, boolean mask", lambda *a: F.scaled_dot_product_attention(*a, attn_mask=route.mask), 1.0),
            ("SDPA, no mask (floor)", lambda *a: F.scaled_dot_product_attention(*a), 1.0)]
    for size in args.query_tiles:
        tiles = route.query_tiles(size)
        rows.append((f"SDPA in {size}-row query tiles", lambda *a, c=tiles: tiled_attention(*a, c),
                     computed_fraction(tiles)))
    options = {"mode": "max-autotune-no-cudagraphs"} if args.autotune else {}
    for tile in args.tiles:
        mask = route.flex_mask(tile)
        attend = torch.compile(lambda q, k, v, mask=mask: flex_attention(q, k, v, block_mask=mask,
                                                                         kernel_options=forward_tiles(mask)),
                               **options)
        rows.append((f"flex attention, {tile}-tiles{' (autotuned)' if args.autotune else ''}", attend,
                     computed_tiles(mask)))
    what = "forward + backward" if cuda else "forward"
    print(f"{args.device}, torch {torch.__version__}, {str(dtype).split('.')[-1]}, B={args.batch} H={args.heads} "
          f"n={n} dh={args.head_dim}, {what}, median of {args.repeats}:")
    for name, attend, fraction in rows:
        try:
            t = timed(attend)
        except (RuntimeError, ValueError) as e:  # compile errors: a tile size this torch refuses; time the rest
            print(f"  {name:40s} failed: {str(e).splitlines()[0][:120]}")
            continue
        scale, unit = (1e12, "TFLOP/s") if cuda else (1e9, "GFLOP/s")
        print(f"  {name:40s} {t * 1e3:8.2f} ms  {dense_flops / t / scale:7.1f} {unit} counting n x n, "
              f"{dense_flops * fraction / t / scale:7.1f} counting the computed part")


if __name__ == "__main__":
    main()
