#!/usr/bin/env bash
# One device call on nvidia-h200-x4: GPU tests, the bench sweep on 2 and 4 GPUs, Llama-3.1-8B prefill with CP = 1,
# 2, 4 (all three CP algorithms at CP = 2) and DeepSeek-V3.2 CP = 2: the measured traces of docs/accuracy.md.
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-accuracy.sh
# (SKIP_GPU_TESTS=1 leaves the GPU tests out, for a call after one that ran them on the same build.)
set -u
. "$(dirname "$0")/lib.sh"
packed_results
P="$BIN/paratwin"
GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi -L > "$OUT/gpus.txt"
[ -n "${SKIP_GPU_TESTS:-}" ] || step gpu_tests 240 "$BIN/gpu_tests" --durations yes
step bench2 90 "$P" bench --gpus 2 --out "$OUT/bench2.json"
[ "$GPUS" -ge 4 ] && step bench4 120 "$P" bench --gpus 4 --out "$OUT/bench4.json"
RUN="run --instrumentation both --warmup 1 --steps 5 --model llama-3.1-8b --layers 2"
for cp in 1 2 4; do
  [ "$cp" -gt "$GPUS" ] && continue
  step llama8b_32k_cp$cp 90 "$P" $RUN --prompt-len 32768 --tp-size $cp --attn-cp-size $cp \
    --trace "$OUT/llama8b_32k_cp$cp.json"
done
step llama8b_16k_cp2 60 "$P" $RUN --prompt-len 16384 --tp-size 2 --attn-cp-size 2 --trace "$OUT/llama8b_16k_cp2.json"
for algo in ring ulysses; do
  step llama8b_32k_cp2_$algo 90 "$P" $RUN --prompt-len 32768 --tp-size 2 --attn-cp-size 2 --cp-algo $algo \
    --cp-split zigzag --trace "$OUT/llama8b_32k_cp2_$algo.json"
done
step ds_cp2_l2 90 "$P" run --instrumentation per-op --warmup 1 --steps 3 --model deepseek-v3.2 --prompt-len 8192 \
  --layers 2 --tp-size 2 --attn-cp-size 2 --trace "$OUT/ds_cp2_l2.json"
pack_results
exit 0
