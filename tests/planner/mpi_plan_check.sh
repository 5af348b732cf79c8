#!/usr/bin/env bash
# mpirun -np 2 paratwin plan ... must rank exactly as one process does: same layouts, same numbers, same front, same
# rejections and the same simulated/pruned counts (pruning bounds change only between waves, so the work done does
# not depend on how it is split).
# Usage: mpi_plan_check.sh PARATWIN MPIRUN
set -euo pipefail
paratwin=$1
mpirun=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(plan --model qwen3-30b-a3b --cluster h200-sxm --nodes 1 --prompt-len 4096 --layers 2 --top 3)
"$paratwin" "${args[@]}" --jobs 2 --json "$dir/single.json" --out "$dir/single-results.json" >/dev/null 2>"$dir/single.err"
"$mpirun" --allow-run-as-root --oversubscribe -np 2 "$paratwin" "${args[@]}" --jobs 1 --json "$dir/mpi.json" \
  --out "$dir/mpi-results.json" >"$dir/mpi.txt" 2>"$dir/mpi.err" || { cat "$dir/mpi.err" >&2; exit 1; }
python3 - "$dir/single.json" "$dir/mpi.json" <<'PY'
import json, sys
single, mpi = (json.load(open(p)) for p in sys.argv[1:3])
assert mpi["run"]["mpi_ranks"] == 2, f"the MPI run had {mpi['run']['mpi_ranks']} rank(s): was paratwin built with MPI?"
for key in ("inputs", "generated", "kept", "rejected", "counts", "ranking", "pareto", "failed"):
    if single[key] != mpi[key]:
        sys.exit(f"mpirun plan differs from the single-process plan in '{key}':\n{single[key]}\n{mpi[key]}")
print(f"mpirun -np 2 plan == single-process plan: {len(single['ranking'])} ranked layouts, "
      f"{single['counts']['simulated']} simulated, {single['counts']['pruned']} pruned")
PY
