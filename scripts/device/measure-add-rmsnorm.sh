#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the fused residual add + RMSNorm (issue 6; docs/performance.md "The
# residual add fused into the RMSNorm"): its GPU test with the RMSNorm, residual add and one-GPU MoE step tests,
# bench_kernels' memory rows (add_rmsnorm beside rmsnorm and add), a Qwen3-235B-A22B layer at 8K tokens with per-op
# traces, this build's paratwin and a baseline's in the order A B A B, and memcheck on the new test's small shapes.
# Usage (repository root): BIN=<paratwin, gpu_tests, bench_kernels, libs> BASE=<baseline paratwin> OUT=/tmp/out \
#   scripts/device/measure-add-rmsnorm.sh
set -u
. "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to the baseline paratwin binary}
packed_results
nvidia-smi -L >"$OUT/machine.txt" 2>&1
step gpu_tests 90 "$BIN/gpu_tests" --durations yes \
  "fused residual add*,RMSNorm*,residual add*,a MoE step with --moe-gemm cublas-streams*"
step bench_memory 60 "$BIN/bench_kernels" --memory-only --csv "$OUT/kernels.csv"
RUN="run --model qwen3-235b-a22b --prompt-len 8192 --layers 1 --warmup 1 --steps 5 --instrumentation per-op"
for i in 1 2; do
  # shellcheck disable=SC2086
  step "run-branch-$i" 60 "$BIN/paratwin" $RUN --trace "$OUT/trace-branch-$i.json"
  # shellcheck disable=SC2086
  step "run-base-$i" 60 "$BASE" $RUN --trace "$OUT/trace-base-$i.json"
done
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
PARATWIN_GPU_TEST_SMALL=1 step memcheck 60 "$CS" --tool memcheck --error-exitcode 99 "$BIN/gpu_tests" \
  "fused residual add*"
grep -h "test cases\|ERROR SUMMARY" "$OUT/gpu_tests.txt" "$OUT/memcheck.txt" | tail -3
grep -h "rmsnorm\|add" "$OUT/bench_memory.txt"
grep -h "median step" "$OUT"/run-*.txt
pack_results
exit 0
