#!/usr/bin/env bash
# Issue 9 in one device call on nvidia-h200-x8 (on x4 / x2 the 8- and 4-GPU steps are skipped, the rest runs):
# the GPU tests, `mpirun` against one process, the bench sweeps of 2, 4 and 8 ranks (for `paratwin calibrate
# --holdout`), `run --check` of the issue's layouts on small models with checkable data flow, measured DeepSeek-V3.2
# prefill layers of the same layouts, and Llama-3.1-8B 32K for CP scaling 1 → 8. Afterwards, on the development machine:
# scripts/accuracy/report.sh on the unpacked results (sim of every run, calibrate --holdout, compare).
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-x8.sh
set -u
. "$(dirname "$0")/lib.sh"
packed_results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
P="$BIN/paratwin"
GPUS=$(nvidia-smi -L | wc -l)
{ nvidia-smi -L; nvidia-smi topo -m; echo "NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset}"; } >"$OUT/machine.txt" 2>&1
step gpu_tests 300 "$BIN/gpu_tests" --durations yes
step mpi_run_check 240 tests/gpu/mpi_run_check.sh "$P" mpirun
for n in 2 4 8; do
  [ "$n" -le "$GPUS" ] && step bench$n 180 "$P" bench --gpus $n --out "$OUT/bench$n.json"
done
L=tests/gpu/tiny-llama/config.json
M=tests/gpu/tiny-qwen3-moe/config.json
check() {  # check NAME GPUS FLAGS...: run --check when the machine has the GPUs
  local name=$1 need=$2
  shift 2
  [ "$need" -le "$GPUS" ] && step "check_$name" 120 "$P" run --check --prompt-len 203 "$@"
}
check tp8_cp8 8 --model $L --tp-size 8 --attn-cp-size 8 --cp-split zigzag
check tp8_dp2_cp4 8 --model $L --tp-size 8 --dp-size 2 --enable-dp-attention --attn-cp-size 4 --batch 2 --cp-split zigzag
check ep8_a2a 8 --model $M --tp-size 8 --attn-cp-size 8 --ep-size 8 --moe-mode a2a --routing per-token
check ep8_gather 8 --model $M --tp-size 8 --attn-cp-size 8 --moe-mode gather --routing per-token
check tp4_cp4 4 --model $L --tp-size 4 --attn-cp-size 4 --cp-split zigzag
check ep4_a2a 4 --model $M --tp-size 4 --attn-cp-size 4 --ep-size 4 --moe-mode a2a --routing per-token
# DeepSeek-V3.2's MLA/DSA layers run with timing-only data flow (`run --check` refuses them): measured traces for
# `paratwin compare` against `paratwin sim` of the same flags.
DS="run --instrumentation per-op --warmup 1 --steps 3 --model deepseek-v3.2 --prompt-len 16384 --layers 2"
if [ "$GPUS" -ge 8 ]; then
  step ds_tp8_cp8 180 "$P" $DS --tp-size 8 --attn-cp-size 8 --trace "$OUT/ds_tp8_cp8.json"
  step ds_tp8_dp2_cp4 180 "$P" $DS --tp-size 8 --dp-size 2 --enable-dp-attention --attn-cp-size 4 --batch 2 \
    --trace "$OUT/ds_tp8_dp2_cp4.json"
  step ds_ep8_a2a 180 "$P" $DS --tp-size 8 --attn-cp-size 8 --ep-size 8 --moe-mode a2a --trace "$OUT/ds_ep8_a2a.json"
  step ds_ep8_gather 180 "$P" $DS --tp-size 8 --attn-cp-size 8 --moe-mode gather --trace "$OUT/ds_ep8_gather.json"
fi
# CP scaling of one Llama-3.1-8B 32K prefill (2 layers), 1 → 8 GPUs.
for cp in 1 2 4 8; do
  [ "$cp" -le "$GPUS" ] && step llama8b_32k_cp$cp 120 "$P" run --instrumentation both --warmup 1 --steps 5 \
    --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size $cp --attn-cp-size $cp \
    --trace "$OUT/llama8b_32k_cp$cp.json"
done
pack_results
exit 0
