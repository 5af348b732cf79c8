#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the fp8 GEMMs (backend/cuda/fp8_gemm.hpp): their GPU tests (block and
# per-tensor scales against a host reference, the tiny DeepSeek-style fp8 engine run and its k error), the kernel
# table with the fp8 rows (bench_kernels), and DeepSeek-V3.2 8K prefills whose fp8 GEMMs run block-scaled: one layer
# (dense MLP) and four (the fourth is the first MoE layer: the experts' fp8 GEMMs, ~256 rows each).
# Usage (repository root, binaries and lib.sh in $BIN): BIN=.carry-fp8 OUT=/tmp/out scripts/device/measure-fp8.sh
set -u
BIN=${BIN:-.carry-fp8}
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
{ nvidia-smi -L; ldd "$BIN/paratwin" | grep -E "cublas|cudnn|nccl|not found"; } >"$OUT/machine.txt" 2>&1
step gpu_tests_fp8 30 "$BIN/gpu_tests" --durations yes "fp8*,a GPU is visible*"
step ds_8k_cp1 50 "$BIN/paratwin" run --warmup 1 --steps 3 --model deepseek-v3.2 --prompt-len 8192 --layers 1 \
  --trace "$OUT/ds_8k_cp1.json"
step ds_8k_4layers 60 "$BIN/paratwin" run --warmup 1 --steps 3 --model deepseek-v3.2 --prompt-len 8192 --layers 4 \
  --trace "$OUT/ds_8k_4layers.json"
step bench_kernels 90 "$BIN/bench_kernels" --csv "$OUT/kernels.csv"
exit 0
