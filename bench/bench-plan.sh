#!/usr/bin/env bash
# The planner's speed goals (issue 8), measured with the paratwin binary:
#  1. every layout of DeepSeek-V3.2, 128K-token prefill, on 8 H200 nodes (64 GPUs), ranked (goal < 60 s on 2 cores);
#  2. one layout on 512 nodes (4096 GPUs) simulated in fast mode (goal < 5 min).
# Prints wall time and peak memory of each (GNU time). Usage: bench/bench-plan.sh [build-dir]   (default build)
set -euo pipefail
build=${1:-build}
paratwin="$build/cli/paratwin"
timing() { /usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KiB (largest single process)" "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== plan: DeepSeek-V3.2, 128K prefill, 8 h200-sxm nodes (64 GPUs), --jobs $(nproc)"
timing "$paratwin" plan --model deepseek-v3.2 --cluster h200-sxm --nodes 8 --prompt-len 131072 \
  --json "$out/plan.json" 2>"$out/plan.err" | sed -n '4p;/^evaluated/p;/^rank/,/^ *3 /p'
tail -1 "$out/plan.err"

echo "== sim --fast: one layout on 512 h200-sxm nodes (4096 GPUs)"
timing "$paratwin" sim --model deepseek-v3.2 --cluster h200-sxm --nodes 512 --tp-size 4096 --dp-size 256 \
  --enable-dp-attention --attn-cp-size 16 --ep-size 256 --moe-dp-size 16 --batch 256 --prompt-len 131072 --fast \
  2>"$out/sim.err" | grep -E "^(TTFT|simulated|exposed)"
tail -1 "$out/sim.err"
