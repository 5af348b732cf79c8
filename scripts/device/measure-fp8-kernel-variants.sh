#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) that compares several builds of the persistent fp8 grouped kernel
# (backend/cuda/fp8_grouped_gemm_kernel.cu) in the same run, the first named build the base (main's): the kernel test of
# each TESTED build (a hung kernel ends the call); bench_kernels --fp8-experts-only of every build, in the given order
# and then reversed (drift of the card's clocks cancels out of the medians), and compare-fp8-experts.py's table; the
# engine (`paratwin run` of DeepSeek-V3.2, fp8 experts, 8K tokens, 4 layers, --moe-gemm hopper-kernel) of the base and
# each TESTED build, A B B A, and moe-gemm-ops.py's medians; per TESTED build the fp8, grouped-kernel and --moe-gemm GPU
# tests and compute-sanitizer memcheck / racecheck / synccheck on the kernel test; then Nsight Compute (one launch at
# 8K tokens, EP 1: speed of light, memory, warp states, stall samples per SASS instruction) of each NCU build. Builds
# that are timing diagnostics (wrong results) need only bench_kernels and stay out of TESTED. Steps run within
# SECONDS_BUDGET (default 300 s), each cut to what is left.
# Each build's folder holds its stripped bench_kernels, and for TESTED builds and the base also gpu_tests and paratwin;
# $LIBS the carried shared libraries (pack-binaries.sh).
# Usage (repository root): OUT=/tmp/out LIBS=.gpucarry TESTED="new" NCU="base new" \
#   scripts/device/measure-fp8-kernel-variants.sh base=DIR new=DIR [diag=DIR ...]
set -u
OUT=${OUT:?set OUT to the output folder}
# shellcheck disable=SC2034  # lib.sh puts $BIN on the library path
BIN=${LIBS:?set LIBS to the folder of the carried shared libraries}
(($# >= 2)) || { echo "usage: measure-fp8-kernel-variants.sh base=DIR name=DIR ..." >&2; exit 2; }
declare -A dir=()
names=()
for arg in "$@"; do
  names+=("${arg%%=*}")
  dir[${arg%%=*}]=${arg#*=}
done
base=${names[0]}
read -r -a tested <<<"${TESTED:-}"
read -r -a profiled <<<"${NCU:-}"
here=$(dirname "$0")
. "$here/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
budget_end=$((SECONDS + ${SECONDS_BUDGET:-300}))
gpu_state
kernel_test="fp8 grouped kernel equals the host product with ragged and empty groups"
for b in "${tested[@]}"; do
  timed "kernel_test_$b" 25 "${dir[$b]}/gpu_tests" "$kernel_test"
  tail -n 2 "$OUT/kernel_test_$b.txt"
done
if grep -q "rc=124" "$OUT/steps.txt" 2>/dev/null; then
  pack_results
  exit 0
fi
declare -A runs=()
order=("${names[@]}")
for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
csvs=()
for b in "${order[@]}"; do
  runs[$b]=$((${runs[$b]:-0} + 1))
  timed "bench-$b-${runs[$b]}" 30 "${dir[$b]}/bench_kernels" --fp8-experts-only --csv "$OUT/$b-${runs[$b]}.csv"
  csvs+=("$OUT/$b-${runs[$b]}.csv")
done
grep -h "ceilings" "$OUT"/bench-*.txt
python3 "$here/compare-fp8-experts.py" "${csvs[@]}" | tee "$OUT/compare.md"
engine=("${tested[@]}" "$base" "$base")
for ((i = ${#tested[@]} - 1; i >= 0; i--)); do engine+=("${tested[i]}"); done
i=0
for b in "${engine[@]}"; do
  i=$((i + 1))
  timed "run-$b-hopper-kernel-$i" 40 "${dir[$b]}/paratwin" run --model deepseek-v3.2 --prompt-len 8192 --layers 4 \
    --warmup 1 --steps 3 --instrumentation per-op --moe-gemm hopper-kernel --trace "$OUT/trace-$b-hopper-kernel-$i.json"
done
python3 "$here/moe-gemm-ops.py" "$OUT"/trace-*.json | tee "$OUT/engine.txt"
for b in "${tested[@]}"; do
  timed "gpu_tests_$b" 60 "${dir[$b]}/gpu_tests" \
    "fp8*,persistent grouped GEMM*,the --moe-gemm hopper-kernel runs*,the --moe-gemm auto*,a MoE step with --moe-gemm*"
  tail -n 2 "$OUT/gpu_tests_$b.txt"
  for tool in memcheck racecheck synccheck; do
    timed "${tool}_$b" 40 compute-sanitizer --tool "$tool" "${dir[$b]}/gpu_tests" "$kernel_test"
    tail -n 1 "$OUT/${tool}_$b.txt"
  done
done
for b in "${profiled[@]}"; do
  timed "ncu_$b" 60 ncu --clock-control none -k regex:fp8_grouped_gemm_kernel -c 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section SourceCounters -o "$OUT/ncu-$b" \
    "${dir[$b]}/bench_kernels" --fp8-experts-only --tokens 8192 --ep 1 || continue
  timeout 20 ncu --import "$OUT/ncu-$b.ncu-rep" --page details >"$OUT/ncu-$b-details.txt" 2>&1
  timeout 30 ncu --import "$OUT/ncu-$b.ncu-rep" --page source --csv --print-source sass >"$OUT/ncu-$b-sass.csv" 2>&1
  grep -i "Throughput\|Duration\|SM Frequency\|Hit Rate" "$OUT/ncu-$b-details.txt"
done
cat "$OUT/steps.txt"
pack_results
exit 0
