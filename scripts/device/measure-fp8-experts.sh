#!/usr/bin/env bash
# One device call on one H200 (nvidia-h200) for the fp8 expert GEMMs on side streams (backend/cuda/fp8_grouped_gemm.hpp):
# the fp8 GPU tests (the ragged, empty-group concurrent case among them) and the 1-GPU fp8 DeepSeek engine test, then
# `paratwin run` of DeepSeek-V3.2 (fp8 experts) at 8K tokens, 4 layers (one MoE layer), before and after the change in
# the order A B B A ($BIN/paratwin-base: the base branch's binary; $BIN/paratwin: this branch's), each with a per-op
# trace (moe-gemm-ops.py prints the medians of moe.gate_up_gemm, moe.down_gemm and the step), then bench_kernels
# --fp8-experts-only (the fp8 experts on 4 and 8 side streams and on one, against the dense block-scaled fp8 GEMM of
# the same size), then compute-sanitizer memcheck and racecheck on the concurrent test.
# Usage (repository root, binaries and lib.sh in $BIN): BIN=.gpucarry OUT=/tmp/out scripts/device/measure-fp8-experts.sh
set -u
BIN=${BIN:-.gpucarry}
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
packed_results
gpu_state
step fp8_tests 60 "$BIN/gpu_tests" --durations yes "[fp8]"
step fp8_engine_test 60 "$BIN/gpu_tests" --durations yes "fp8 GEMMs of a DeepSeek-style model*"
step grouped_tests 60 "$BIN/gpu_tests" "*grouped GEMM*"
for t in fp8_tests fp8_engine_test grouped_tests; do grep -B2 -A12 -m2 "FAILED" "$OUT/$t.txt"; tail -n 3 "$OUT/$t.txt"; done
i=0
for binary in paratwin-base paratwin paratwin paratwin-base; do
  i=$((i + 1))
  tag=$([[ $binary == paratwin ]] && echo branch || echo base)
  step "run-$tag-$i" 60 "$BIN/$binary" run --model deepseek-v3.2 --prompt-len 8192 --layers 4 --warmup 1 --steps 3 \
    --instrumentation per-op --trace "$OUT/trace-fp8-$tag-cublas-streams-$i.json"
done
python3 "$(dirname "$0")/moe-gemm-ops.py" "$OUT"/trace-*.json | tee "$OUT/summary.txt"
step bench_fp8_experts 60 "$BIN/bench_kernels" --fp8-experts-only --csv "$OUT/fp8-experts.csv"
grep -E "fp8|copy|GEMM 8192" "$OUT/bench_fp8_experts.txt" | tee -a "$OUT/summary.txt"
step memcheck 50 compute-sanitizer --tool memcheck "$BIN/gpu_tests" "fp8 expert GEMMs on side streams*"
step racecheck 50 compute-sanitizer --tool racecheck "$BIN/gpu_tests" "fp8 expert GEMMs on side streams*"
tail -n 3 "$OUT"/memcheck.txt "$OUT"/racecheck.txt | tee -a "$OUT/summary.txt"
cat "$OUT/steps.txt"
pack_results
exit 0
