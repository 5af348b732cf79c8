#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the MoE expert GEMMs (backend/cuda/grouped_gemm.hpp): the grouped
# GEMM GPU tests (every launch method against a float reference; the persistent kernel at ragged and zoo sizes), the
# DSA tests (their kernel shares hopper_ops.cuh and tensor_map.hpp with the grouped kernel), memcheck and racecheck on
# the persistent kernel at a small ragged shape, and bench_kernels --grouped-only (every method at the zoo's MoE
# shapes, 8K and 32K tokens, EP 1 and 8, each against the dense GEMM of the same size). ~35 s on a warm machine.
# Usage (repository root, binaries and lib.sh in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-grouped.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
export PATH=$PATH:/usr/local/cuda/bin
kernel_case="persistent grouped GEMM kernel equals the float product per expert"
small_section="ragged groups around the 128-row tile, empty ones between"
step grouped_tests 60 "$BIN/gpu_tests" --durations yes "*grouped GEMM*"
step dsa_tests 60 "$BIN/gpu_tests" "the DSA*"
for tool in memcheck racecheck; do
  step "$tool" 60 compute-sanitizer --tool "$tool" --error-exitcode 99 "$BIN/gpu_tests" "$kernel_case" -c "$small_section"
done
step bench_grouped 120 "$BIN/bench_kernels" --grouped-only --csv "$OUT/grouped.csv"
exit 0
