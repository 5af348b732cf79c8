#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) that compares two builds of the persistent fp8 grouped kernel
# (backend/cuda/fp8_grouped_gemm_kernel.cu) under compute-sanitizer racecheck and in speed: the candidate's kernel
# test; per build the SASS of the kernel's object (cuobjdump, to map racecheck's instruction offsets) and racecheck's
# summary on the kernel test; bench_kernels --fp8-experts-only in the order A B B A and compare-fp8-experts.py's table;
# the candidate's fp8 and persistent grouped GEMM tests and memcheck; then racecheck's per-hazard report of each build
# (its hazard kinds counted; each report cut to 3 MB). Steps run within SECONDS_BUDGET (default 75 s), each cut to
# what is left; a hung kernel test ends the call.
# Each build's folder holds its gpu_tests, bench_kernels (stripped) and kernel.o (the kernel's object file from
# build/backend/cuda/CMakeFiles/paratwin_cuda_backend.dir/fp8_grouped_gemm_kernel.cu.o); $LIBS the carried shared
# libraries (pack-binaries.sh).
# Usage (repository root): OUT=/tmp/out LIBS=.gpucarry scripts/device/racecheck-fp8-kernel-builds.sh BASE_DIR NEW_DIR
set -u
OUT=${OUT:?set OUT to the output folder}
# shellcheck disable=SC2034  # lib.sh puts $BIN on the library path
BIN=${LIBS:?set LIBS to the folder of the carried shared libraries}
declare -A dir=([base]=${1:?usage: racecheck-fp8-kernel-builds.sh BASE_DIR NEW_DIR}
  [new]=${2:?usage: racecheck-fp8-kernel-builds.sh BASE_DIR NEW_DIR})
here=$(dirname "$0")
. "$here/lib.sh"
packed_results
export PATH=$PATH:/usr/local/cuda/bin
budget_end=$((SECONDS + ${SECONDS_BUDGET:-75}))
gpu_state
kernel_test="fp8 grouped kernel equals the host product with ragged and empty groups"
timed kernel_test_new 20 "${dir[new]}/gpu_tests" "$kernel_test"
tail -n 2 "$OUT/kernel_test_new.txt"
if grep -q "rc=124" "$OUT/steps.txt"; then
  pack_results
  exit 0
fi
for build in base new; do
  timeout 10 cuobjdump -sass "${dir[$build]}/kernel.o" >"$OUT/sass-$build.txt" 2>&1
  timed "racecheck_$build" 20 compute-sanitizer --tool racecheck "${dir[$build]}/gpu_tests" "$kernel_test"
  grep "RACECHECK SUMMARY" "$OUT/racecheck_$build.txt"
done
declare -A runs=([base]=0 [new]=0)
for build in base new new base; do
  runs[$build]=$((runs[$build] + 1))
  timed "bench-$build-${runs[$build]}" 20 "${dir[$build]}/bench_kernels" --fp8-experts-only \
    --csv "$OUT/$build-${runs[$build]}.csv"
done
grep -h "ceiling" "$OUT"/bench-*.txt
python3 "$here/compare-fp8-experts.py" "$OUT"/base-*.csv "$OUT"/new-*.csv | tee "$OUT/compare.md"
timed gpu_tests_new 45 "${dir[new]}/gpu_tests" "fp8*,persistent grouped GEMM*"
tail -n 2 "$OUT/gpu_tests_new.txt"
timed memcheck_new 15 compute-sanitizer --tool memcheck "${dir[new]}/gpu_tests" "$kernel_test"
tail -n 1 "$OUT/memcheck_new.txt"
for build in base new; do
  timed "racecheck_hazards_$build" 20 compute-sanitizer --tool racecheck --racecheck-report hazard \
    "${dir[$build]}/gpu_tests" "$kernel_test"
  grep -o "Potential [A-Z]* hazard" "$OUT/racecheck_hazards_$build.txt" | sort | uniq -c
done
for f in "$OUT"/racecheck_hazards_*.txt; do head -c 3000000 "$f" >"$f.cut" && mv "$f.cut" "$f"; done
cat "$OUT/steps.txt"
pack_results
exit 0
