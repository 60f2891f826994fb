#!/usr/bin/env bash
# The GPU numbers of BENCHMARKS.md in one go: training tokens/s and MFU (bf16) for the tiny/small/base
# configs at three batch sizes, eager or compiled, and the planner's latency per replanning step (BENCHMARKS.md).
#
#     tools/bench_gpu.sh [eager|compiled|plan] [OUTDIR]     # OUTDIR/bench_gpu.log gets the whole log
#
# PEAK_TFLOPS is the GPU's dense bf16 peak for MFU (default 989: an H100 SXM).
set -euo pipefail
command -v nvidia-smi >/dev/null || { echo "bench_gpu.sh: no NVIDIA GPU here (nvidia-smi not found)" >&2; exit 2; }
what=${1:-eager}
out=${2:-bench_gpu_out}
mkdir -p "$out"
peak=${PEAK_TFLOPS:-989}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader
  case $what in
    eager|compiled)
      flag=""; [ "$what" = compiled ] && flag="--compile"
      for model in tiny small base; do
        for batch in 64 128 256; do
          python tools/bench_train.py --device cuda --model "$model" --batch "$batch" --repeats 10 \
            --peak-tflops "$peak" $flag 2>&1 | tail -3 || echo "$model batch $batch $flag failed (out of memory?)"
        done
      done ;;
    plan)
      for envs in 1 10; do
        for flag in "" --compile; do
          python tools/bench_plan.py --device cuda --envs "$envs" --repeats 10 $flag
          python tools/bench_plan.py --device cuda --envs "$envs" --repeats 10 --plan objects --keypoints 2 $flag
        done
      done ;;
    *) echo "bench_gpu.sh: unknown part '$what' (expected eager, compiled or plan)" >&2; exit 2 ;;
  esac
} 2>&1 | tee -a "$out/bench_gpu.log"
