#!/usr/bin/env bash
# One device call on one H200: the kernel tests, the kernel table (bench_kernels) and one Qwen3-235B-A22B MoE layer
# (8K tokens, EP 1) under both binder paths, with the expert GEMMs' per-op times from the trace: docs/performance.md's
# "Kernels on H200". Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-kernels.sh
set -u
BIN=${BIN:-.gpucarry}
: "${OUT:?set OUT to the output folder}"
export LD_LIBRARY_PATH=$PWD/$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi -L > "$OUT/gpus.txt" 2>&1
step() {  # step NAME SECONDS CMD...: runs CMD under a timeout, appends its output to NAME.txt, logs its wall time
  local name=$1 limit=$2 t0 t1 rc
  shift 2
  t0=$(date +%s%N)
  timeout "$limit" "$@" >> "$OUT/$name.txt" 2>&1
  rc=$?
  t1=$(date +%s%N)
  printf '%-14s rc=%-3s %6d ms\n' "$name" "$rc" $(((t1 - t0) / 1000000)) | tee -a "$OUT/steps.txt"
}
step tests 60 "$BIN/gpu_tests" --durations yes \
  "a GPU is visible*,attention on the tensor cores*,grouped GEMM*,RMSNorm*,RoPE*,residual add*,MoE unpermute*"
step bench 150 "$BIN/bench_kernels" --csv "$OUT/kernels.csv"
for routing in per-token uniform; do
  echo "== --routing $routing" >> "$OUT/moe.txt"
  step moe 40 "$BIN/paratwin" run --model qwen3-235b-a22b --prompt-len 8192 --layers 1 --warmup 1 --steps 5 \
    --routing "$routing" --trace /tmp/moe-trace.json
  python3 - >> "$OUT/moe.txt" 2>&1 <<'PY'
import json
d = json.load(open('/tmp/moe-trace.json'))
for e in d['traceEvents'] if isinstance(d, dict) else d:
    if e.get('ph') == 'X' and 'moe' in e.get('name', '') and 'gemm' in e['name']:
        print(f"  {e['name']}: {e['dur']:.1f} us, {e['args'].get('flops', 0) / max(e['dur'], 1e-9) / 1e6:.1f} TFLOP/s")
PY
done
tail -4 "$OUT/tests.txt"
cat "$OUT/bench.txt" "$OUT/moe.txt"
