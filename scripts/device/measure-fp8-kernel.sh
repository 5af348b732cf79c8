#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the persistent fp8 grouped kernel (backend/cuda/fp8_grouped_gemm_kernel.hpp):
# its GPU test (ragged and empty groups against the double-precision host product), bench_kernels --fp8-experts-only
# (the kernel beside the 4 side streams and the dense block-scaled fp8 GEMM of the same size, in the same run),
# compute-sanitizer memcheck and racecheck on the kernel's test, the bench again, then the other fp8 tests and the
# bf16 grouped GEMM tests (hopper_ops.cuh and tensor_map.cpp are shared with the bf16 kernel). Steps run in that order
# within SECONDS_BUDGET (default 130 s: the lease is short), each cut to what is left; a hung kernel test stops the
# call. Each step's summary goes to stdout as it ends.
# Usage (repository root, gpu_tests, bench_kernels, their libraries and lib.sh in $BIN):
#   BIN=.gpucarry OUT=/tmp/out scripts/device/measure-fp8-kernel.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
budget_end=$((SECONDS + ${SECONDS_BUDGET:-130}))
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
timed() {  # timed NAME SECONDS CMD...: step, cut to the budget left; false once the budget is spent
  local name=$1 limit=$2 left=$((budget_end - SECONDS))
  shift 2
  if ((left < 5)); then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/steps.txt"
    return 1
  fi
  step "$name" $((limit < left ? limit : left)) "$@"
}
bench_summary() { grep -E "fp8|GEMM 8192|copy" "$OUT/$1.txt"; }
kernel_test="fp8 grouped kernel equals the host product, ragged and empty groups included"
timed kernel_test 40 "$BIN/gpu_tests" --durations yes "$kernel_test"
tail -n 25 "$OUT/kernel_test.txt"
if grep -q "rc=124" "$OUT/steps.txt"; then
  pack_results
  exit 0
fi
timed bench_1 45 "$BIN/bench_kernels" --fp8-experts-only --csv "$OUT/fp8-experts-1.csv" && bench_summary bench_1
timed memcheck 40 compute-sanitizer --tool memcheck "$BIN/gpu_tests" "$kernel_test" && tail -n 4 "$OUT/memcheck.txt"
timed racecheck 50 compute-sanitizer --tool racecheck "$BIN/gpu_tests" "$kernel_test" && tail -n 4 "$OUT/racecheck.txt"
timed bench_2 45 "$BIN/bench_kernels" --fp8-experts-only --csv "$OUT/fp8-experts-2.csv" && bench_summary bench_2
timed fp8_tests 30 "$BIN/gpu_tests" "[fp8]" && tail -n 3 "$OUT/fp8_tests.txt"
timed grouped_tests 30 "$BIN/gpu_tests" "*grouped GEMM*" && tail -n 3 "$OUT/grouped_tests.txt"
cat "$OUT/steps.txt"
pack_results
exit 0
