#!/usr/bin/env python3
"""Per-op times of the MoE expert GEMMs in `paratwin run --trace` files: for each trace, rank 0's moe.gate_up_gemm and
moe.down_gemm durations (summed over layers and micro-batches) and the median step (metadata), then per (model, choice)
the median over that choice's traces. Usage: moe-gemm-ops.py TRACE.json... (names trace-<tag>-<choice>-<i>.json)."""
import json
import re
import statistics
import sys
from collections import defaultdict


def ops_ms(path):
    with open(path) as f:
        trace = json.load(f)
    extra = trace["metadata"].get("extra", {})
    out = {"step": float(extra["median_step_s"]) * 1e3, "gate_up": 0.0, "down": 0.0}
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e.get("tid", 0) != 0:
            continue
        for role in ("gate_up", "down"):
            if e["name"].endswith(f"moe.{role}_gemm"):
                out[role] += e["dur"] / 1e3  # microseconds in the file
    out["moe_gemm_ops"] = extra.get("moe_gemm_ops_per_step", "")
    return out


by_choice = defaultdict(list)
for path in sys.argv[1:]:
    m = re.search(r"trace-(.+)-(cublas-streams|hopper-kernel|auto)-\d+\.json$", path)
    if not m:
        continue
    r = ops_ms(path)
    by_choice[(m.group(1), m.group(2))].append(r)
    print(f"{path.rsplit('/', 1)[-1]}: gate_up {r['gate_up']:.3f} ms, down {r['down']:.3f} ms, step {r['step']:.3f} ms"
          f" ({r['moe_gemm_ops']})")
print(f"{'model':24} {'--moe-gemm':15} {'runs':>4} {'gate_up ms':>11} {'down ms':>9} {'step ms':>9}")
for (tag, choice), runs in sorted(by_choice.items()):
    med = {k: statistics.median(r[k] for r in runs) for k in ("gate_up", "down", "step")}
    print(f"{tag:24} {choice:15} {len(runs):4d} {med['gate_up']:11.3f} {med['down']:9.3f} {med['step']:9.3f}")
