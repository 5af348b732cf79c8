# Sourced by the device scripts (after they may set BIN): the binaries' folder ($BIN, default .gpucarry) joins the
# library path; `step NAME SECONDS CMD...` runs CMD under a timeout, logs its output to $OUT/NAME.txt and its exit
# status and wall time to $OUT/steps.txt (`timed` likewise, within a budget); `packed_results` / `pack_results` put everything into one tarball.
BIN=${BIN:-.gpucarry}
export LD_LIBRARY_PATH=$PWD/$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step() {
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc
  t0=$(date +%s%N)
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  rc=$?
  t1=$(date +%s%N)
  printf '%-28s rc=%-3s %6d ms\n' "$name" "$rc" $(((t1 - t0) / 1000000)) | tee -a "$OUT/steps.txt"
}

# `timed NAME SECONDS CMD...`: `step`, its limit cut to what is left of the call's budget (the caller sets
# budget_end=$((SECONDS + N)) first); false, and the step skipped, once fewer than 5 s are left.
timed() {
  local name=$1 limit=$2 left=$((${budget_end:?set budget_end before timed} - SECONDS))
  shift 2
  if ((left < 5)); then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/steps.txt"
    return 1
  fi
  step "$name" $((limit < left ? limit : left)) "$@"
}

# `gpu_state`: the GPU's name, clocks, temperature and power now, printed and written to $OUT/gpu.txt (a measurement's
# context: a clock below the usual 1,980 MHz explains a slow run).
gpu_state() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
}

# The device tool brings back a few files only: results go to $OUT/results, and pack_results turns that folder into
# $OUT/results.tgz.
packed_results() {
  FINAL=${OUT:?set OUT to the output folder}
  OUT=$FINAL/results
  mkdir -p "$OUT"
}
pack_results() {
  tar czf "$FINAL/results.tgz" -C "$FINAL" results && rm -rf "$OUT"
}

# `moe_layer_runs SUMMARY "MODEL|LAYERS|EXTRA FLAGS|CHOICE ..." ...`: `paratwin run` ($BIN/paratwin) of each model at
# 8K tokens with each --moe-gemm choice in the order given (LAYERS: DeepSeek-V3.2's first 3 layers are dense, so 4
# reach its MoE layer), a per-op trace each ($OUT/trace-<model>[-bf16 with extra flags]-<choice>-<i>.json); then
# writes to SUMMARY, and prints, moe-gemm-ops.py's medians of the expert GEMMs and the step and the runs' launch
# counts and fallback notes.
moe_layer_runs() {
  local summary=$1 spec model layers extra choices tag choice i
  shift
  for spec in "$@"; do
    IFS='|' read -r model layers extra choices <<<"$spec"
    tag=$model${extra:+-bf16}
    i=0
    for choice in $choices; do
      i=$((i + 1))
      # shellcheck disable=SC2086
      step "run-$tag-$choice-$i" 150 "$BIN/paratwin" run --model "$model" $extra --prompt-len 8192 \
        --layers "$layers" --warmup 1 --steps 3 --instrumentation per-op --moe-gemm "$choice" \
        --trace "$OUT/trace-$tag-$choice-$i.json"
    done
  done
  {
    python3 "$(dirname "${BASH_SOURCE[0]}")/moe-gemm-ops.py" "$OUT"/trace-*.json 2>&1
    grep -h "MoE expert GEMMs\|note:" "$OUT"/run-*.txt | sort | uniq -c
  } | tee "$summary"
}
