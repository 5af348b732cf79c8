#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) that compares builds of the persistent grouped GEMM kernel
# (backend/cuda/grouped_gemm_kernel.cu) in the same run: the grouped GEMM GPU tests and memcheck / racecheck on the
# kernel's ragged case for the last build named (the candidate), the kernel's ragged case for the others, then
# bench_kernels --grouped-only of every build, twice, in the order A B C then C B A (drift of the card's clocks cancels
# out of the medians), and compare-grouped.py's table of the kernel's times against 4 streams and the dense GEMM.
# Each build's folder holds its gpu_tests and bench_kernels; $LIBS the carried shared libraries (pack-binaries.sh).
# Usage (repository root): OUT=/tmp/out LIBS=.gpucarry scripts/device/measure-grouped-builds.sh base=DIR new=DIR ...
set -u
OUT=${OUT:?set OUT to the output folder}
BIN=${LIBS:?set LIBS to the folder of the carried shared libraries}
. "$(dirname "$0")/lib.sh"
export PATH=$PATH:/usr/local/cuda/bin
packed_results
labels=() dirs=()
for arg in "$@"; do
  labels+=("${arg%%=*}")
  dirs+=("${arg#*=}")
done
last=$((${#labels[@]} - 1))
kernel_case="persistent grouped GEMM kernel equals the float product per expert"
small_section="ragged groups around the 128-row tile, empty ones between"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv >"$OUT/gpu.txt" 2>&1
candidate=${dirs[$last]}
step "tests_${labels[$last]}" 120 "$candidate/gpu_tests" --durations yes "*grouped GEMM*"
for tool in memcheck racecheck; do
  step "${tool}_${labels[$last]}" 90 compute-sanitizer --tool "$tool" --error-exitcode 99 "$candidate/gpu_tests" \
    "$kernel_case" -c "$small_section"
done
for ((i = 0; i < last; ++i)); do
  step "tests_${labels[$i]}" 60 "${dirs[$i]}/gpu_tests" "$kernel_case" -c "$small_section"
done
csvs=()
for round in 1 2; do
  order=$(seq 0 "$last")
  if ((round == 2)); then order=$(seq "$last" -1 0); fi
  for i in $order; do
    step "bench_${labels[$i]}_$round" 60 "${dirs[$i]}/bench_kernels" --grouped-only --csv "$OUT/${labels[$i]}_$round.csv"
    csvs+=("${labels[$i]}=$OUT/${labels[$i]}_$round.csv")
    tar czf "$FINAL/results.tgz" -C "$FINAL" results  # so far, should the call run out of time
  done
done
python3 "$(dirname "$0")/compare-grouped.py" "${csvs[@]}" | tee "$OUT/compare.txt"
grep -h "test cases" "$OUT"/tests_*.txt
grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$OUT"/memcheck_*.txt "$OUT"/racecheck_*.txt
pack_results
exit 0
