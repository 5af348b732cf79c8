#!/usr/bin/env bash
# One process per GPU under mpirun must run the same schedule as one process driving both GPUs: `run --check` passes
# with the same errors, and `run --trace` writes the same ops for every rank (timings differ, the ops may not).
# Needs 2 GPUs and fails without them (a GPU test never skips).
# Usage: mpi_run_check.sh PARATWIN MPIRUN
set -euo pipefail
paratwin=$1
mpirun=$2
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
if [ "${gpus:-0}" -lt 2 ]; then
  echo "mpi_run_check: needs 2 GPUs, found ${gpus:-0} (nvidia-smi -L)" >&2
  exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=("$mpirun" --oversubscribe -np 2)
check=(run --check --model "$here/tiny-llama/config.json" --tp-size 2 --attn-cp-size 2 --cp-split zigzag
       --prompt-len 203)
"$paratwin" "${check[@]}" >"$dir/single-check.txt"
"${mpi[@]}" "$paratwin" "${check[@]}" >"$dir/mpi-check.txt" 2>"$dir/mpi-check.err" ||
  { cat "$dir/mpi-check.txt" "$dir/mpi-check.err" >&2; exit 1; }
grep -q PASSED "$dir/mpi-check.txt" || { cat "$dir/mpi-check.txt" >&2; exit 1; }
# Two ranks sum two addends in every reduction, so the errors are the same to the last digit.
diff <(grep "relative L2" "$dir/single-check.txt") <(grep "relative L2" "$dir/mpi-check.txt")

run=(run --model "$here/tiny-llama/config.json" --tp-size 2 --attn-cp-size 2 --prompt-len 4096 --warmup 1
     --steps 3 --instrumentation per-op)
"$paratwin" "${run[@]}" --trace "$dir/single.json" >"$dir/single-run.txt"
"${mpi[@]}" "$paratwin" "${run[@]}" --trace "$dir/mpi.json" >"$dir/mpi-run.txt" 2>"$dir/mpi-run.err" ||
  { cat "$dir/mpi-run.txt" "$dir/mpi-run.err" >&2; exit 1; }
grep -q "in 2 process(es)" "$dir/mpi-run.txt" || { echo "the mpirun run did not span 2 processes:" >&2;
  cat "$dir/mpi-run.txt" >&2; exit 1; }
python3 - "$dir/single.json" "$dir/mpi.json" <<'PY'
import json, sys
def ops(path):
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    return sorted((e["args"]["rank"], e["args"]["op"], e["name"]) for e in events), events
single, _ = ops(sys.argv[1])
mpi, events = ops(sys.argv[2])
if single != mpi:
    sys.exit(f"the mpirun trace has {len(mpi)} op events, the single-process one {len(single)}; first difference: "
             f"{next((a, b) for a, b in zip(single, mpi) if a != b) if len(single) == len(mpi) else 'counts'}")
ranks = sorted({e['args']['rank'] for e in events})
assert ranks == [0, 1], ranks
print(f"mpirun -np 2 run == single-process run: {len(mpi)} op events on ranks {ranks}")
PY
cat "$dir/single-run.txt" "$dir/mpi-run.txt"
