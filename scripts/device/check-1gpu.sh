#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200): every GPU test that needs one GPU, the kernel table (bench_kernels) and
# one-GPU runs of a Llama-3.1-8B 32K and a DeepSeek-V3.2 16K and 64K prefill layer with the production kernels (64K on
# one GPU is issue 6's CP = 1 baseline for CP = 2 on two), then one MoE layer at 8K tokens per model with `--moe-gemm
# auto` against `cublas-streams` (A B B A, per-op traces; moe-gemm-ops.py prints the medians).
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/check-1gpu.sh
set -u
. "$(dirname "$0")/lib.sh"
packed_results
{ nvidia-smi -L; ldd "$BIN/paratwin" | grep -E "cudnn|nccl|mpi|not found"; } >"$OUT/machine.txt" 2>&1
one_gpu="a GPU is visible*,more ranks than GPUs*,attention*,fused cuDNN*,grouped GEMM*,RMSNorm*,RoPE*,residual add*"
one_gpu+=",MoE unpermute*,the DSA*,index-sparse*,the KV-cache write*,fp8*,persistent grouped GEMM*,*moe-gemm*,the MoE router*,fused residual add*"
step gpu_tests 240 "$BIN/gpu_tests" --durations yes "$one_gpu"
step bench_kernels 200 "$BIN/bench_kernels" --csv "$OUT/kernels.csv"
RUN="run --warmup 1 --steps 3"
step llama8b_32k_cp1 90 "$BIN/paratwin" $RUN --model llama-3.1-8b --prompt-len 32768 --layers 2 \
  --trace "$OUT/llama8b_32k_cp1.json"
step ds_16k_cp1 90 "$BIN/paratwin" $RUN --model deepseek-v3.2 --prompt-len 16384 --layers 1 \
  --trace "$OUT/ds_16k_cp1.json"
step ds_64k_cp1 120 "$BIN/paratwin" $RUN --model deepseek-v3.2 --prompt-len 65536 --layers 1 \
  --trace "$OUT/ds_64k_cp1.json"
# DeepSeek-V3.2's zoo experts are fp8 (block-scaled; --weight-dtype bf16 runs them in bf16).
moe_layer_runs "$OUT/moe_gemm_summary.txt" "qwen3-235b-a22b|1||cublas-streams auto auto cublas-streams" \
  "deepseek-v3.2|4|--weight-dtype bf16|cublas-streams auto auto cublas-streams" \
  "deepseek-v3.2|4||cublas-streams auto auto cublas-streams"
pack_results
exit 0
