#!/usr/bin/env bash
# The GPU numbers of BENCHMARKS.md in one go: training tokens/s and MFU (bf16) for the tiny/small/base
# configs at three batch sizes, eager or compiled, and the planner's latency per replanning step (BENCHMARKS.md).
#
#     tools/benchmarks/gpu_round.sh [eager|compiled|blocks|plan|mfu] [OUTDIR]     # OUTDIR/gpu_round.log gets the whole log
#
# compiled: `compile=true` (a layer with all its experts as one region); blocks: the regional blocks.
# mfu: the GPU-only tests, then base at batch 256 compiled with each attention path and max-autotune's fused
# matmul epilogues, side by side in one call (under 10 minutes: each row stops after ROW_TIMEOUT s, default 130).
#
# PEAK_TFLOPS is the GPU's dense bf16 peak for MFU (default 989: an H100 SXM).
set -euo pipefail
command -v nvidia-smi >/dev/null || { echo "gpu_round.sh: no NVIDIA GPU here (nvidia-smi not found)" >&2; exit 2; }
what=${1:-eager}
out=${2:-gpu_round_out}
mkdir -p "$out"
peak=${PEAK_TFLOPS:-989}
cd "$(dirname "$0")/../.."  # the checkout: the paths below are relative to it
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader
  case $what in
    eager|compiled|blocks)
      flag=""; [ "$what" = compiled ] && flag="--compile layer"; [ "$what" = blocks ] && flag="--compile blocks"
      for model in tiny small base; do
        for batch in 64 128 256; do
          python tools/benchmarks/train_throughput.py --device cuda --model "$model" --batch "$batch" --repeats 10 \
            --peak-tflops "$peak" $flag 2>&1 | tail -3 || echo "$model batch $batch $flag failed (out of memory?)"
        done
      done ;;
    plan)  # CUDA graphs (the default) and eager, side by side
      for envs in 1 10; do
        for graphs in true false; do
          python tools/benchmarks/planning_latency.py --device cuda --envs "$envs" --repeats 10 cuda_graphs=$graphs
          python tools/benchmarks/planning_latency.py --device cuda --envs "$envs" --repeats 10 --plan objects --keypoints 2 cuda_graphs=$graphs
          python tools/benchmarks/planning_latency.py --device cuda --envs "$envs" --repeats 10 --plan push --keypoints 3 cuda_graphs=$graphs
        done
      done ;;
    mfu)
      python -m pytest -q tests/test_gpu_training.py tests/test_cuda_graphs.py 2>&1 | tail -3 || true
      base="tools/benchmarks/train_throughput.py --device cuda --model base --batch 256 --repeats 10 --peak-tflops $peak --compile layer"
      for variant in "" "--set attention_query_tile=64" "--attention flex --flex-tile 128" \
                     "--compile-mode max-autotune-no-cudagraphs"; do
        timeout "${ROW_TIMEOUT:-130}" python $base $variant 2>&1 | tail -2 || echo "base 256 $variant: failed or over ${ROW_TIMEOUT:-130} s"
      done ;;
    *) echo "gpu_round.sh: unknown part '$what' (expected eager, compiled, blocks, plan or mfu)" >&2; exit 2 ;;
  esac
} 2>&1 | tee -a "$out/gpu_round.log"
