"""Memory traffic of the compiled layer region: the bytes that torch.compile's generated (elementwise,
normalisation, copy) kernels read and write per token and width element, forward and backward, under bf16
autocast. Those kernels are memory-bound on a GPU, so their bytes divided by the memory bandwidth is their
time there; inductor's scheduler decides the fusions largely alike for every device, so the count can be
taken on a CPU (for base it predicted the GPU profile's elementwise time within a few percent; BENCHMARKS.md).
The norms follow CUDA autocast's policy (fp32 layer_norm and rms_norm) unless ``--autocast-policy cpu``: the
CPU's own policy leaves them in their input's dtype, which hid 34 B of base's GPU traffic while the trunk's
norms still followed autocast.
The matmuls and attention (extern kernels) are listed apart. ``--scope blocks`` leaves the concatenations and
attention eager, so its count is not comparable with the layer region's.

Weights are cast and their gradients reduced once per step whatever the batch; a run at two batch sizes
separates the bytes that grow with the tokens (what dominates a large GPU batch) from those.

    python tools/benchmarks/kernel_traffic.py [--model base] [--set KEY=VALUE ...] [--width 384] [--batches 2 4] [--gpu-tokens 131328]
                                 [--gpu-bandwidth 2.9]   # TB/s, for the projected elementwise time
                                 [--top 10]   # the kernels that move the most, by the ops fused into them
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections import Counter

import torch
from torch._inductor import config as inductor_config
from torch._inductor import metrics
from torch._inductor.compile_fx import inductor_metrics_log

from autocast_policy import cuda_norm_policy
from harness import EXPERTS, build, random_batch

from worldmot.training.losses import WorldModelLoss

EXTERN = ("ExternKernelSchedulerNode", "NopKernelSchedulerNode")


def kernel_ops(node) -> str:
    """A fused kernel named by the aten ops it was made of ("add,mul,tanh"): the same in both batch sizes."""
    ops = {str(o.target).removeprefix("aten.").split(".")[0]
           for n in node.get_nodes() for o in (getattr(n.node, "origins", None) or ())}
    return ",".join(sorted(ops - {"prims"}))


def traffic(args, batch_size: int) -> tuple[int, int, int, int, Counter]:
    """One compiled forward + backward of a one-layer model. Returns (tokens, generated kernels' bytes,
    extern kernels' bytes, generated kernels, generated kernels' bytes by their ops)."""
    model = build(args.model, EXPERTS[args.experts], "cpu", overrides=args.set, width=args.width,
                  heads=args.width // args.head_dim, depth=1)
    batch = random_batch(model, batch_size)
    torch._dynamo.reset()
    metrics.reset()
    model.trunk.compile(args.scope, dynamic=False)
    policy = cuda_norm_policy() if args.autocast_policy == "cuda" else contextlib.nullcontext()
    with policy, torch.autocast("cpu", dtype=torch.bfloat16):
        loss = WorldModelLoss(model)(batch)["loss"]
        loss.backward()
    extern = sum(4 * e for node, e in metrics.nodes_num_elem if type(node).__name__ in EXTERN)
    by_ops = Counter()
    for node, e in metrics.nodes_num_elem:
        if type(node).__name__ not in EXTERN:
            by_ops[kernel_ops(node)] += 4 * e
    return batch.token_ids.numel(), sum(by_ops.values()), extern, metrics.generated_kernel_count, by_ops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base")
    p.add_argument("--experts", default="full MoT", choices=list(EXPERTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model config overrides, e.g. --set fp32_residual=true block_bias=true")
    p.add_argument("--width", type=int, default=384, help="the model's width here (bytes scale with it; "
                   "bf16 matmuls on a CPU are slow, so a narrower layer than base's 768 keeps the run short)")
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--scope", default="layer", choices=["layer", "blocks"])
    p.add_argument("--autocast-policy", default="cuda", choices=["cuda", "cpu"],
                   help="whose autocast dtypes the norms get (cuda: fp32 layer_norm and rms_norm, as on a GPU)")
    p.add_argument("--top", type=int, default=0, help="also list the N kernels (by fused ops) that move the most")
    p.add_argument("--batches", type=int, nargs=2, default=[2, 4])
    p.add_argument("--gpu-tokens", type=int, default=256 * 513, help="tokens of the GPU step to project to")
    p.add_argument("--gpu-width", type=int, default=768)
    p.add_argument("--gpu-depth", type=int, default=12)
    p.add_argument("--gpu-bandwidth", type=float, default=2.9, help="TB/s the GPU's elementwise kernels reach")
    args = p.parse_args()
    inductor_config.force_disable_caches = True  # a cache hit skips the code generation that counts the bytes
    warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")
    inductor_metrics_log.setLevel(logging.INFO)  # inductor counts the bytes only when it logs them
    inductor_metrics_log.propagate, inductor_metrics_log.disabled = False, False  # counted, not printed

    (n1, g1, e1, k1, ops1), (n2, g2, e2, k2, ops2) = (traffic(args, b) for b in args.batches)
    per = lambda b1, b2: (b2 - b1) / ((n2 - n1) * args.width)  # bytes per token per width element
    variant = "".join(", " + o for o in args.set)
    print(f"{args.model} ({args.experts}{variant}) at width {args.width}, one layer, compiled {args.scope}, bf16 autocast "
          f"({args.autocast_policy}'s policy for the norms), torch {torch.__version__}")
    print(f"batches {args.batches}: {n1} and {n2} tokens, {k1} and {k2} generated kernels")
    g = per(g1, g2)
    step_bytes = g * args.gpu_tokens * args.gpu_width * args.gpu_depth
    print(f"generated kernels: {g:.1f} B per token per width element per layer (forward + backward); "
          f"extern (matmuls, attention): {per(e1, e2):.1f}")
    print(f"projected to {args.gpu_tokens} tokens x width {args.gpu_width} x {args.gpu_depth} layers: "
          f"{step_bytes / 1e9:.0f} GB per step, {step_bytes / (args.gpu_bandwidth * 1e12) * 1e3:.0f} ms at "
          f"{args.gpu_bandwidth:g} TB/s")
    if args.top:
        print(f"the {args.top} largest, B per token per width element (kernels named by the ops fused into them):")
        for ops in sorted(ops1 | ops2, key=lambda o: per(ops1[o], ops2[o]), reverse=True)[:args.top]:
            print(f"{per(ops1[ops], ops2[ops]):8.2f}  {ops}")


if __name__ == "__main__":
    main()
