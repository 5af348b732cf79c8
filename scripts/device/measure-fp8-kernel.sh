#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the persistent fp8 grouped kernel (backend/cuda/fp8_grouped_gemm_kernel.hpp):
# its GPU test (ragged and empty groups against the double-precision host product) under compute-sanitizer memcheck
# and racecheck too, bench_kernels --fp8-experts-only twice (the kernel beside the 4 side streams and the dense
# block-scaled fp8 GEMM of the same size, in the same run), `paratwin run` of DeepSeek-V3.2 (fp8 experts) at 8K
# tokens, 4 layers, with the fp8 experts on cuBLASLt streams and on the kernel in the order A B B A (--moe-gemm
# cublas-streams / hopper-kernel; moe-gemm-ops.py prints the medians), then the other fp8 tests and the engine's
# fp8-kernel test. Steps run in that order within SECONDS_BUDGET (default 150 s: the lease is short), each cut to
# what is left; a failed kernel test skips the engine runs, a hung one ends the call.
# Usage (repository root; gpu_tests, bench_kernels, paratwin, their libraries, lib.sh and moe-gemm-ops.py in $BIN):
#   BIN=.gpucarry OUT=/tmp/out scripts/device/measure-fp8-kernel.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
budget_end=$((SECONDS + ${SECONDS_BUDGET:-150}))
here=$(dirname "$0")
mkdir -p "$OUT"
. "$here/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
gpu_state
bench_summary() { grep -E "fp8|GEMM 8192|copy" "$OUT/$1.txt"; }
kernel_test="fp8 grouped kernel equals the host product with ragged and empty groups"
timed kernel_test 40 "$BIN/gpu_tests" --durations yes "$kernel_test"
tail -n 25 "$OUT/kernel_test.txt"
kernel_ok=$(grep -q "^kernel_test *rc=0 " "$OUT/steps.txt" && echo 1 || echo 0)
if grep -q "rc=124" "$OUT/steps.txt"; then
  pack_results
  exit 0
fi
timed memcheck 40 compute-sanitizer --tool memcheck "$BIN/gpu_tests" "$kernel_test" && tail -n 4 "$OUT/memcheck.txt"
timed racecheck 50 compute-sanitizer --tool racecheck "$BIN/gpu_tests" "$kernel_test" && tail -n 4 "$OUT/racecheck.txt"
timed bench_1 45 "$BIN/bench_kernels" --fp8-experts-only --csv "$OUT/fp8-experts-1.csv" && bench_summary bench_1
if ((kernel_ok)); then
  i=0
  for choice in cublas-streams hopper-kernel hopper-kernel cublas-streams; do
    i=$((i + 1))
    timed "run-$choice-$i" 40 "$BIN/paratwin" run --model deepseek-v3.2 --prompt-len 8192 --layers 4 --warmup 1 \
      --steps 3 --instrumentation per-op --moe-gemm "$choice" --trace "$OUT/trace-fp8-$choice-$i.json"
  done
  python3 "$here/moe-gemm-ops.py" "$OUT"/trace-*.json | tee "$OUT/summary.txt"
fi
timed bench_2 45 "$BIN/bench_kernels" --fp8-experts-only --csv "$OUT/fp8-experts-2.csv" && bench_summary bench_2
timed fp8_tests 30 "$BIN/gpu_tests" "[fp8]" && tail -n 3 "$OUT/fp8_tests.txt"
timed engine_tests 40 "$BIN/gpu_tests" "the --moe-gemm hopper-kernel runs fp8 experts*,fp8 GEMMs of a DeepSeek-style model*" &&
  tail -n 3 "$OUT/engine_tests.txt"
cat "$OUT/steps.txt"
pack_results
exit 0
