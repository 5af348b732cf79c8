#!/usr/bin/env bash
# One device call for fused attention (issue 6): the attention GPU tests, bench_attention (cuDNN fused vs cuBLAS
# unfused), Llama-3.1-8B 32K tokens end to end, and the ring-CP numerical check on 2 GPUs (fails loudly on one).
# Usage (from the repository root, binaries and libyaml-cpp.so.0.7 in $BIN):
#   BIN=.carry-attn OUT=/tmp/out scripts/device/measure-attention.sh
# cuDNN is the device's own (the binaries link libcudnn.so.9 from the system); CUDNN_LOGLEVEL_DBG=2 logs its warnings.
set -u
BIN=${BIN:-.gpucarry}
: "${OUT:?set OUT to the output folder}"
export LD_LIBRARY_PATH=$PWD/$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0
step() {  # step NAME SECONDS CMD...: runs CMD under a timeout into $OUT/NAME.txt, logs its exit code and wall time
  local name=$1 limit=$2 t0
  shift 2
  t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "$name rc=$? $(($(date +%s) - t0)) s" | tee -a "$OUT/steps.txt"
}
{ nvidia-smi -L; ls -la /usr/lib/x86_64-linux-gnu/libcudnn*; ldd "$BIN/bench_attention" | grep -i "cudnn\|cublas\|cudart"; } \
  > "$OUT/env.txt" 2>&1
export CUDNN_LOGLEVEL_DBG=2 CUDNN_LOGDEST_DBG=$OUT/cudnn_log_full.txt
step tests 80 "$BIN/gpu_tests" "*cuDNN*,*falls back*,*tensor cores*,a GPU is visible*" --durations yes
step bench 110 "$BIN/bench_attention" 10
unset CUDNN_LOGLEVEL_DBG CUDNN_LOGDEST_DBG
step run32k 50 "$BIN/paratwin" run --model llama-3.1-8b --prompt-len 32768 --layers 2 --instrumentation per-op \
  --warmup 1 --steps 3
step check_ring 40 "$BIN/paratwin" run --check --model tests/gpu/tiny-llama/config.json --tp-size 2 --attn-cp-size 2 \
  --cp-split zigzag --cp-algo ring --prompt-len 512
head -c 2000000 "$OUT/cudnn_log_full.txt" > "$OUT/cudnn_log.txt" 2>/dev/null
rm -f "$OUT/cudnn_log_full.txt"
