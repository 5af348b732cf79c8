#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) that compares two builds of the persistent fp8 grouped kernel
# (backend/cuda/fp8_grouped_gemm_kernel.cu) in the same run: the candidate's kernel test (ragged and empty groups
# against the double-precision host product), bench_kernels --fp8-experts-only of both builds in the order A B B A
# (drift of the card's clocks cancels out of the medians) and compare-fp8-experts.py's table (the kernel's time and
# fraction of its run's dense block-scaled fp8 GEMM, the 4 streams'), then the candidate's fp8, grouped-kernel and
# --moe-gemm GPU tests, `paratwin run` of DeepSeek-V3.2 (fp8 experts, 8K tokens, 4 layers) with the candidate on
# cuBLASLt streams and on its kernel and the base on its kernel (moe-gemm-ops.py's medians), and memcheck / racecheck
# on the kernel test. Steps run within SECONDS_BUDGET (default 150 s), each cut to what is left; a hung kernel test
# ends the call.
# Each build's folder holds its bench_kernels and paratwin, the candidate's also gpu_tests; $LIBS the carried shared
# libraries (pack-binaries.sh).
# Usage (repository root): OUT=/tmp/out LIBS=.gpucarry scripts/device/measure-fp8-kernel-builds.sh BASE_DIR NEW_DIR
set -u
OUT=${OUT:?set OUT to the output folder}
# shellcheck disable=SC2034  # lib.sh puts $BIN on the library path
BIN=${LIBS:?set LIBS to the folder of the carried shared libraries}
base=${1:?usage: measure-fp8-kernel-builds.sh BASE_DIR NEW_DIR}
new=${2:?usage: measure-fp8-kernel-builds.sh BASE_DIR NEW_DIR}
here=$(dirname "$0")
. "$here/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
budget_end=$((SECONDS + ${SECONDS_BUDGET:-150}))
gpu_state
kernel_test="fp8 grouped kernel equals the host product with ragged and empty groups"
timed kernel_test 25 "$new/gpu_tests" --durations yes "$kernel_test"
tail -n 4 "$OUT/kernel_test.txt"
if grep -q "^kernel_test *rc=124" "$OUT/steps.txt"; then
  pack_results
  exit 0
fi
declare -A runs=([base]=0 [new]=0)
for build in base new new base; do
  runs[$build]=$((runs[$build] + 1))
  dir=$base
  [[ $build == new ]] && dir=$new
  timed "bench-$build-${runs[$build]}" 45 "$dir/bench_kernels" --fp8-experts-only \
    --csv "$OUT/$build-${runs[$build]}.csv"
done
grep -h "ceilings" "$OUT"/bench-*.txt
python3 "$here/compare-fp8-experts.py" "$OUT"/base-*.csv "$OUT"/new-*.csv | tee "$OUT/compare.md"
timed gpu_tests 60 "$new/gpu_tests" \
  "fp8*,persistent grouped GEMM*,the --moe-gemm hopper-kernel runs*,the --moe-gemm auto*,a MoE step with --moe-gemm*"
tail -n 3 "$OUT/gpu_tests.txt"
i=0
for run in new:cublas-streams new:hopper-kernel base:hopper-kernel base:hopper-kernel new:hopper-kernel \
  new:cublas-streams; do
  i=$((i + 1))
  build=${run%%:*} choice=${run#*:}
  dir=$base
  [[ $build == new ]] && dir=$new
  timed "run-$build-$choice-$i" 40 "$dir/paratwin" run --model deepseek-v3.2 --prompt-len 8192 --layers 4 \
    --warmup 1 --steps 3 --instrumentation per-op --moe-gemm "$choice" --trace "$OUT/trace-$build-$choice-$i.json"
done
python3 "$here/moe-gemm-ops.py" "$OUT"/trace-*.json | tee "$OUT/engine.txt"
timed memcheck 40 compute-sanitizer --tool memcheck "$new/gpu_tests" "$kernel_test" && tail -n 3 "$OUT/memcheck.txt"
timed racecheck 50 compute-sanitizer --tool racecheck "$new/gpu_tests" "$kernel_test" && tail -n 3 "$OUT/racecheck.txt"
cat "$OUT/steps.txt"
pack_results
exit 0
