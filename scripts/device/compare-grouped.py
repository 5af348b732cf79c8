#!/usr/bin/env python3
"""Compares builds of the persistent grouped GEMM kernel from bench_kernels --grouped-only CSVs of one device call.

Usage: compare-grouped.py LABEL=FILE.csv [LABEL=FILE.csv ...]  (several files of one label: their medians)
Prints, per MoE shape: the dense GEMM of the same size and the 4 streams (the backend's method), each the median over
every file (every build runs both), then per label the kernel's median time, its fractions of the dense GEMM and of
the 4 streams' rate (> 1: faster than the 4 streams), and each file's time.
"""
import csv
import statistics
import sys
from collections import defaultdict


def read(path):
    rows = {}
    dense = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            name, shape = r["kernel"], r["shape"]
            if not name.startswith("grouped GEMM") and not name.startswith("dense GEMM"):
                continue
            if name.startswith("dense GEMM"):
                continue
            gemm, method = name[len("grouped GEMM "):].split(" (", 1)
            key = (r["model"].split("-")[0], shape.split(":")[0], gemm)
            rows[(key, method.rstrip(")"))] = float(r["time_s"])
            dense[key] = float(r["time_s"]) * float(r["fraction"])  # fraction = dense / this
    return rows, dense


def main():
    by_label = defaultdict(list)
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        try:
            by_label[label].append(read(path))
        except OSError as e:
            print(f"skip {path}: {e}")
    streams = defaultdict(list)
    kernel = defaultdict(lambda: defaultdict(list))
    dense = defaultdict(list)
    keys = []
    for label, runs in by_label.items():
        for rows, d in runs:
            for (key, method), t in rows.items():
                if key not in keys:
                    keys.append(key)
                if method == "4 streams":
                    streams[key].append(t)
                elif method == "kernel":
                    kernel[key][label].append(t)
            for key, t in d.items():
                dense[key].append(t)
    labels = list(by_label)
    print(f"{'shape':<34} {'dense ms':>8} {'4str ms':>8} " + " | ".join(f"{l + ' ms (x dense, x 4str)':<34}" for l in labels))
    for key in keys:
        d = statistics.median(dense[key])
        s = statistics.median(streams[key]) if streams[key] else float("nan")
        cells = []
        for l in labels:
            ts = kernel[key][l]
            if ts:
                t = statistics.median(ts)
                cells.append(f"{t * 1e3:8.3f} ({d / t:.2f}x, {s / t:.2f}) {'/'.join(f'{x * 1e3:.3f}' for x in ts)}")
            else:
                cells.append(f"{'-':>22}")
        print(f"{' '.join(key):<34} {d * 1e3:8.3f} {s * 1e3:8.3f} ({d / s:.2f}) " + " | ".join(cells))


if __name__ == "__main__":
    main()
