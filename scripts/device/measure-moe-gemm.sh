#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for `paratwin run --moe-gemm`: the GPU tests of the MoE GEMM launch choice
# (a MoE step through the engine with each choice against the cuBLAS reference, the fallbacks), the grouped GEMM tests
# (every method, the kernel's fallback for an unaligned Y) and the 1-GPU fp8 MoE engine test, then `paratwin run` of
# one MoE layer at 8K tokens per model and choice, in the order A B B A, each with a per-op trace; moe-gemm-ops.py
# prints the medians of moe.gate_up_gemm, moe.down_gemm and the step from the traces.
# Usage (repository root, binaries and lib.sh in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-moe-gemm.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
packed_results
gpu_state
step moe_gemm_tests 180 "$BIN/gpu_tests" --durations yes "*moe-gemm*"
step grouped_tests 120 "$BIN/gpu_tests" --durations yes "*grouped GEMM*"
step fp8_moe_test 120 "$BIN/gpu_tests" "fp8 GEMMs of a DeepSeek-style model*"
# DeepSeek-V3.2's experts are fp8 in the zoo (one block-scaled cuBLASLt call per expert, whatever --moe-gemm said
# when this script was written): its bf16 form (--weight-dtype bf16) runs the grouped GEMMs that --moe-gemm picks.
moe_layer_runs "$OUT/summary.txt" "qwen3-235b-a22b|1||cublas-streams hopper-kernel hopper-kernel cublas-streams" \
  "deepseek-v3.2|4|--weight-dtype bf16|cublas-streams hopper-kernel hopper-kernel cublas-streams" \
  "deepseek-v3.2|4||cublas-streams hopper-kernel"
grep -h "median step" "$OUT"/run-*.txt | sort | uniq -c | tee -a "$OUT/summary.txt"
pack_results
exit 0
