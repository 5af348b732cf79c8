#!/usr/bin/env bash
# compute-sanitizer over the backend's kernel tests (gpu_tests) on one GPU: memcheck (out-of-bounds and misaligned
# accesses, API errors), racecheck (shared-memory hazards) and initcheck (reads of device memory never written), each
# tool one process over every kernel test case at small shapes (PARATWIN_GPU_TEST_SMALL=1: tests/gpu/small_shapes.hpp;
# the tools slow kernels 10–100×). Each tool's log is $OUT/<tool>.txt (its errors appear right after the test case
# that made them: Catch prints each case's duration when it ends); $OUT/summary.txt has per tool the exit status,
# compute-sanitizer's summary line and Catch's result. Needs compute-sanitizer (CUDA toolkit) on PATH or in
# /usr/local/cuda/bin.
# Usage (repository root, binaries in $BIN): BIN=.gpucarry OUT=/tmp/out [TOOLS="memcheck racecheck"]
#   [LIMIT_S=120] scripts/device/sanitize-kernels.sh
set -u
BIN=${BIN:-.gpucarry}
: "${OUT:?set OUT to the output folder}"
TOOLS=${TOOLS:-memcheck racecheck initcheck}
LIMIT_S=${LIMIT_S:-120}
. "$(dirname "$0")/lib.sh"
export PATH=$PATH:/usr/local/cuda/bin
if ! command -v compute-sanitizer >/dev/null; then
  echo "sanitize-kernels.sh: compute-sanitizer not found (PATH, /usr/local/cuda/bin)" | tee "$OUT/summary.txt"
  exit 1
fi
# Every kernel test case (the engine's multi-GPU cases are not kernel tests); the project's own kernels first.
cases="RMSNorm*,fused residual add*,RoPE*,residual add*,MoE unpermute*,the MoE router*,the DSA*,index-sparse*,attention*,fused cuDNN*,grouped GEMM*,persistent grouped GEMM*"
export PARATWIN_GPU_TEST_SMALL=1
status=0
for tool in $TOOLS; do
  # --error-exitcode: any error fails the step even when every test passes.
  step "$tool" "$LIMIT_S" compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 200 \
    "$BIN/gpu_tests" --durations yes "$cases"
  rc=$(awk -v t="$tool" '$1 == t { sub("rc=", "", $2); r = $2 } END { print r }' "$OUT/steps.txt")
  [ "$rc" = 0 ] || status=1
  {
    echo "== $tool: rc=$rc"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases|assertions" "$OUT/$tool.txt" || echo "(no summary: see $tool.txt)"
  } >>"$OUT/summary.txt"
done
cat "$OUT/summary.txt"
exit $status
