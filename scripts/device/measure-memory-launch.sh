#!/usr/bin/env bash
# One device call on one H200: where the layer's memory-bound kernels' time goes at 8K and 16K tokens
# (docs/performance.md, "Where the 8K memory kernels' time goes"). bench_memory_launch with GEMM bursts, the kernel
# tests, bench_kernels --memory-only twice (each row also against a copy of its own bytes), and one ncu pass each of
# Qwen3-235B-A22B's 8K rmsnorm and rope (hardware counters; clocks left alone). Needs ncu on PATH or under
# /usr/local/cuda/bin or /opt/nvidia/nsight-compute for the last step (skipped otherwise).
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-memory-launch.sh
set -u
. "$(dirname "$0")/lib.sh"
packed_results
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw --format=csv -lms 100 >"$OUT/clocks.csv" 2>&1 &
smi=$!
step gpu_tests 60 "$BIN/gpu_tests" --durations yes "RMSNorm*,RoPE*,residual add*,MoE unpermute*"
step launch 100 "$BIN/bench_memory_launch" --after-gemm --csv "$OUT/launch.csv"
step memory_only_1 40 "$BIN/bench_kernels" --memory-only --csv "$OUT/memory_only_1.csv"
step memory_only_2 40 "$BIN/bench_kernels" --memory-only --csv "$OUT/memory_only_2.csv"
kill "$smi"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$ncu" ]; then
  for kernel in rmsnorm rope; do
    step "ncu_$kernel" 60 "$ncu" --clock-control none -k "regex:$kernel" -c 1 --section SpeedOfLight \
      --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
      "$BIN/bench_memory_launch" --profile "$kernel:qwen3-235b-a22b:8192"
  done
fi
cat "$OUT/launch.txt"
pack_results
exit 0
