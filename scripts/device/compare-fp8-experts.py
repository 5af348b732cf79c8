#!/usr/bin/env python3
"""bench_kernels --fp8-experts-only CSVs of two or more builds (named <build>-<i>.csv) side by side: per shape and
build, the medians over that build's runs of the dense block-scaled fp8 GEMM's rate, the persistent fp8 kernel's time
(each run's in brackets) and fraction of its run's dense GEMM, and the 4 side streams' time and fraction.
Usage: compare-fp8-experts.py base-1.csv new-1.csv new-2.csv base-2.csv"""
import csv
import statistics
import sys
from collections import defaultdict

if len(sys.argv) < 2:
    sys.exit("compare-fp8-experts.py: give the bench_kernels --fp8-experts-only CSVs, named <build>-<i>.csv "
             "(e.g. base-1.csv new-1.csv)")

# (build, shape, GEMM, method) -> [(seconds, fraction of dense, rate per s)]
rows = defaultdict(list)
for path in sys.argv[1:]:
    build = path.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    shape = None
    with open(path) as f:
        for r in csv.DictReader(f):
            name = r["kernel"]
            if "(kernel)" in name:
                method = "kernel"
            elif "(4 streams)" in name:
                method = "4 streams"
            elif name.startswith("dense fp8 GEMM"):
                method = "dense"  # follows its shape's kernel row
            else:
                continue
            if method != "dense":
                shape = r["shape"].split(":")[0]  # "8192 tok EP 1"
            gemm = "gate_up" if "gate_up" in name else "down"
            rows[(build, shape, gemm, method)].append(
                (float(r["time_s"]), float(r["fraction"] or "nan"), float(r["rate_per_s"])))


def median(values):
    return statistics.median(values) if values else float("nan")


builds = sorted({key[0] for key in rows})
shapes = sorted({(key[1], key[2]) for key in rows},
                key=lambda s: (int(s[0].split()[0]), int(s[0].split()[-1]), s[1] != "gate_up"))
print("| tokens, EP | GEMM | build | dense TFLOP/s | kernel ms (runs) | kernel / dense | 4 streams ms | streams / dense |")
print("|---|---|---|---|---|---|---|---|")
for shape, gemm in shapes:
    for build in builds:
        kernel = rows.get((build, shape, gemm, "kernel"), [])
        if not kernel:
            continue
        dense = rows.get((build, shape, gemm, "dense"), [])
        streams = rows.get((build, shape, gemm, "4 streams"), [])
        each = ", ".join(f"{r[0] * 1e3:.3f}" for r in kernel)
        print(f"| {shape} | {gemm} | {build} | {median([r[2] for r in dense]) / 1e12:.0f} | "
              f"{median([r[0] for r in kernel]) * 1e3:.3f} ({each}) | {median([r[1] for r in kernel]):.2f} | "
              f"{median([r[0] for r in streams]) * 1e3:.3f} | {median([r[1] for r in streams]):.2f} |")
