#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the DSA indexer's fp8 Hopper kernel (backend/cuda/indexer_fp8_wgmma.cu):
# every DSA GPU test (the bf16 indexer kernels, the fp8 kernel against a double-precision sum of host-quantised e4m3,
# the fp8 launcher's and the binder's choice of kernel, top-k, sparse attention); bench_kernels --dsa-only (the fp8
# kernel's row beside the bf16 ones, against a dense fp8 GEMM of 8192^3 measured in the same run); `paratwin run` of
# one DeepSeek-V3.2 layer at 16K tokens with per-op events (idx.score is fp8 in the schedule: the binder runs it on the
# fp8 kernel on sm_90, and the run's "DSA indexer ops" line says so), whose DSA op times indexer-ops.py prints; and
# compute-sanitizer memcheck, racecheck and synccheck of the fp8 kernel test at small shapes
# (PARATWIN_GPU_TEST_SMALL=1), last because they are checks, not figures. Steps run in that order within
# SECONDS_BUDGET (default 540 s: the device tool's limit is 600 s per command), each cut to what is left; a failed or
# hung fp8 kernel test skips the engine run and the sanitizers (a kernel that is wrong or hangs there would only hang
# again), not the benchmark (its bf16 rows stand alone; a hang there is cut by its timeout).
# Results: $OUT/results.tgz (every step's log, steps.txt, the CSV and the trace).
# Usage (repository root; gpu_tests, bench_kernels, paratwin and their libraries in $BIN, packed here by
# scripts/device/pack-binaries.sh BUILD_DIR .gpucarry from a CUDA build of this branch):
#   BIN=.gpucarry OUT=/tmp/out scripts/device/measure-indexer-fp8.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
budget_end=$((SECONDS + ${SECONDS_BUDGET:-540}))
here=$(dirname "$0")
mkdir -p "$OUT"
. "$here/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"

timed dsa_tests 120 "$BIN/gpu_tests" --durations yes "the DSA*"
tail -n 30 "$OUT/dsa_tests.txt"
fp8_test="the DSA indexer's fp8 scores equal a double-precision host sum on ragged shapes"
timed fp8_test 60 "$BIN/gpu_tests" --durations yes "$fp8_test"
tail -n 4 "$OUT/fp8_test.txt"
fp8_ok=$(grep -q "^fp8_test *rc=0 " "$OUT/steps.txt" && echo 1 || echo 0)

timed bench 120 "$BIN/bench_kernels" --dsa-only --csv "$OUT/dsa.csv" &&
  grep -E "indexer|fp8 GEMM|ceilings" "$OUT/bench.txt"

if ((fp8_ok)); then
  timed run_16k 120 "$BIN/paratwin" run --model deepseek-v3.2 --prompt-len 16384 --layers 1 --warmup 1 --steps 3 \
    --instrumentation per-op --trace "$OUT/trace-ds16k.json" && tail -n 10 "$OUT/run_16k.txt"
  python3 "$here/indexer-ops.py" "$OUT/trace-ds16k.json" 2>&1 | tee "$OUT/ops.txt"
  for tool in memcheck racecheck synccheck; do
    # --error-exitcode: any finding fails the step even when every assertion passes.
    PARATWIN_GPU_TEST_SMALL=1 timed "$tool" 90 compute-sanitizer --tool "$tool" --error-exitcode 99 \
      --print-limit 100 "$BIN/gpu_tests" "$fp8_test" &&
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases" "$OUT/$tool.txt"
  done
fi
cat "$OUT/steps.txt"
pack_results
exit 0
