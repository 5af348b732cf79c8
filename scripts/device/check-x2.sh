#!/usr/bin/env bash
# One device call on nvidia-h200-x2: first issue 6's CP comparison (a DeepSeek-V3.2 prefill layer of 64K tokens with
# CP = 2 on both GPUs, then with CP = 1 on one; the target is >= 1.85 x), then the GPU tests that need at most 2 GPUs,
# `mpirun -np 2 paratwin run` against one process (tests/gpu/mpi_run_check.sh), an mpirun launch that must fail fast
# with a clear error, and the backend benchmark.
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/check-x2.sh
set -u
. "$(dirname "$0")/lib.sh"
packed_results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
{ nvidia-smi -L; mpirun --version | head -1; ldd "$BIN/paratwin" | grep -E "mpi|nccl|cudnn|not found"; } \
  >"$OUT/machine.txt" 2>&1
layer=(run --warmup 1 --steps 3 --model deepseek-v3.2 --prompt-len 65536 --layers 1)
step ds_64k_cp2 180 "$BIN/paratwin" "${layer[@]}" --tp-size 2 --attn-cp-size 2 --trace "$OUT/ds_64k_cp2.json"
step ds_64k_cp1 120 "$BIN/paratwin" "${layer[@]}" --trace "$OUT/ds_64k_cp1.json"
grep -H "median step" "$OUT/ds_64k_cp2.txt" "$OUT/ds_64k_cp1.txt"
step mpi_run_check 240 tests/gpu/mpi_run_check.sh "$BIN/paratwin" mpirun
# 4 ranks on 2 GPUs under 2 processes: process 1 finds no GPU 2 and must end the job at once with that error.
step mpi_too_few_gpus 60 mpirun --oversubscribe -np 2 "$BIN/paratwin" run --model tests/gpu/tiny-llama/config.json \
  --tp-size 4 --attn-cp-size 4 --prompt-len 256
step gpu_tests 300 "$BIN/gpu_tests" --durations yes "~numerical check: CP=4 ring and Ulysses*" \
  "~numerical check fails when the MoE groups run into the next pipeline stage" \
  "~numerical check: Ulysses CP=2 with PP=2*"
step bench_cuda_backend 150 "$BIN/bench_cuda_backend"
pack_results
exit 0
