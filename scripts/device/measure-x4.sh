#!/usr/bin/env bash
# One device call on nvidia-h200-x4 (or x2: the 4-GPU parts then fail loudly and the rest runs): GPU tests, the
# bench sweep on 2 and 4 GPUs, and measured traces of the runs that docs/accuracy.md compares with the simulator.
# Usage (from the repository root, with the binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-x4.sh
set -u
. "$(dirname "$0")/lib.sh"
packed_results
P="$BIN/paratwin"
GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi -L > "$OUT/gpus.txt"
echo "NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset}" >> "$OUT/gpus.txt"
step gpu_tests 240 "$BIN/gpu_tests" --durations yes
step bench2 90 "$P" bench --gpus 2 --out "$OUT/bench2.json"
[ "$GPUS" -ge 4 ] && step bench4 120 "$P" bench --gpus 4 --out "$OUT/bench4.json"
RUN="run --instrumentation per-op --warmup 1 --steps 3"
DS="--model deepseek-v3.2 --prompt-len 8192"
step llama8b_cp1 60 "$P" $RUN --model llama-3.1-8b --prompt-len 16384 --layers 2 --trace "$OUT/llama8b_cp1.json"
step llama8b_cp2 60 "$P" $RUN --model llama-3.1-8b --prompt-len 16384 --layers 2 --tp-size 2 --attn-cp-size 2 \
  --trace "$OUT/llama8b_cp2.json"
step ds_cp1_l2 90 "$P" $RUN $DS --layers 2 --trace "$OUT/ds_cp1_l2.json"
step ds_cp2_l2 90 "$P" $RUN $DS --layers 2 --tp-size 2 --attn-cp-size 2 --trace "$OUT/ds_cp2_l2.json"
step ds_cp2_l4 120 "$P" $RUN $DS --layers 4 --tp-size 2 --attn-cp-size 2 --trace "$OUT/ds_cp2_l4.json"
if [ "$GPUS" -ge 4 ]; then
  step ds_cp4_l2 90 "$P" $RUN $DS --layers 2 --tp-size 4 --attn-cp-size 4 --trace "$OUT/ds_cp4_l2.json"
  step ds_tp4_cp4_l4 120 "$P" $RUN $DS --layers 4 --tp-size 4 --attn-cp-size 4 --trace "$OUT/ds_tp4_cp4_l4.json"
  step ds_dp2_cp2_l4 120 "$P" $RUN $DS --layers 4 --tp-size 4 --dp-size 2 --enable-dp-attention --attn-cp-size 2 \
    --batch 2 --trace "$OUT/ds_dp2_cp2_l4.json"
  step ds_ep4_a2a_l4 120 "$P" $RUN $DS --layers 4 --tp-size 4 --attn-cp-size 4 --ep-size 4 --moe-mode a2a \
    --trace "$OUT/ds_ep4_a2a_l4.json"
  step ds_ep4_gather_l4 120 "$P" $RUN $DS --layers 4 --tp-size 4 --attn-cp-size 4 --moe-mode gather \
    --trace "$OUT/ds_ep4_gather_l4.json"
  for algo in ring ulysses; do
    step check_cp4_$algo 60 "$P" run --check --model tests/gpu/tiny-llama/config.json --tp-size 4 --attn-cp-size 4 \
      --cp-algo $algo --cp-split zigzag --prompt-len 203
  done
fi
step bench_cuda_backend 150 "$BIN/bench_cuda_backend"
pack_results
exit 0
