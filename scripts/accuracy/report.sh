#!/usr/bin/env bash
# Recomputes every figure of docs/accuracy.md from the measured traces of scripts/device/measure-accuracy.sh.
# Usage: scripts/accuracy/report.sh MEASURED_DIR [WORK_DIR]   (PARATWIN=path/to/paratwin, default build/cli/paratwin)
# Writes into WORK_DIR (default accuracy-work/): predicted traces (datasheet and calibrated), the calibration file,
# and one `paratwin compare` report per measured trace, then prints the summary lines the doc quotes.
set -euo pipefail
M=${1:?measured traces folder}
W=${2:-accuracy-work}
P=${PARATWIN:-build/cli/paratwin}
mkdir -p "$W"

# Calibration: fitted on the two bench sweeps, hold-out error on every other size; the launch overhead fitted from
# the sweeps' one-row kernels (--fit-launch-overhead: the fixed cost every measured kernel pays).
# (bench2 + bench4 from measure-accuracy.sh; bench8 too from measure-x8.sh when an 8-GPU machine ran it.)
benches=()
for n in 2 4 8; do [ -f "$M/bench$n.json" ] && benches+=("$M/bench$n.json"); done
"$P" calibrate "${benches[@]}" -o "$W/calibration.yaml" --holdout --fit-launch-overhead > "$W/calibrate.txt"

# Each measured trace with the flags that made it (scripts/device/measure-accuracy.sh, measure-x8.sh).
declare -A RUNS=(
  [bench2]="bench --gpus 2"
  [bench4]="bench --gpus 4"
  [llama8b_32k_cp1]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 1 --attn-cp-size 1"
  [llama8b_32k_cp2]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 2 --attn-cp-size 2"
  [llama8b_32k_cp4]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 4 --attn-cp-size 4"
  [llama8b_16k_cp2]="sim --model llama-3.1-8b --layers 2 --prompt-len 16384 --tp-size 2 --attn-cp-size 2"
  [llama8b_32k_cp2_ring]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 2 --attn-cp-size 2 --cp-algo ring --cp-split zigzag"
  [llama8b_32k_cp2_ulysses]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 2 --attn-cp-size 2 --cp-algo ulysses --cp-split zigzag"
  [ds_cp2_l2]="sim --model deepseek-v3.2 --layers 2 --prompt-len 8192 --tp-size 2 --attn-cp-size 2"
  [bench8]="bench --gpus 8"
  [llama8b_32k_cp8]="sim --model llama-3.1-8b --layers 2 --prompt-len 32768 --tp-size 8 --attn-cp-size 8"
  [ds_tp8_cp8]="sim --model deepseek-v3.2 --layers 2 --prompt-len 16384 --tp-size 8 --attn-cp-size 8"
  [ds_tp8_dp2_cp4]="sim --model deepseek-v3.2 --layers 2 --prompt-len 16384 --tp-size 8 --dp-size 2 --enable-dp-attention --attn-cp-size 4 --batch 2"
  [ds_ep8_a2a]="sim --model deepseek-v3.2 --layers 2 --prompt-len 16384 --tp-size 8 --attn-cp-size 8 --ep-size 8 --moe-mode a2a"
  [ds_ep8_gather]="sim --model deepseek-v3.2 --layers 2 --prompt-len 16384 --tp-size 8 --attn-cp-size 8 --moe-mode gather"
)
for name in $(printf '%s\n' "${!RUNS[@]}" | sort); do
  [ -f "$M/$name.json" ] || continue
  read -r -a cmd <<< "${RUNS[$name]}"
  for mode in datasheet calibrated; do
    extra=()
    [ "$mode" = calibrated ] && extra=(--calibration "$W/calibration.yaml")
    if [ "${cmd[0]}" = bench ]; then
      "$P" "${cmd[@]}" --simulate "${extra[@]}" --out "$W/$name.$mode.json" > /dev/null
    else
      "$P" "${cmd[@]}" "${extra[@]}" --trace "$W/$name.$mode.json" > /dev/null
    fi
    "$P" compare "$W/$name.$mode.json" "$M/$name.json" --csv "$W/$name.$mode.csv" > "$W/$name.$mode.txt"
    printf '%-26s %-10s %s\n' "$name" "$mode" "$(grep -m1 '^End to end' "$W/$name.$mode.txt")"
  done
done
echo
sed -n '/^Hold-out error/,$p' "$W/calibrate.txt"
