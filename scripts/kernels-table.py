#!/usr/bin/env python3
"""Turns bench_kernels' CSV (--csv FILE) into the Markdown tables of docs/performance.md ("Kernels on H200").

Usage: scripts/kernels-table.py kernels.csv [--tokens 16384] [--memory-only] [--match TEXT]
Rows are kept when they were measured at the prompt length `--tokens` (the CSV's prompt_tokens column), when they are
a layer memory kernel (`--memory-only`), and when their kernel name contains TEXT (`--match`, repeatable); the grouped
and fp8 GEMM rows have tables of their own in the doc and are left out unless matched explicitly.
"""
import argparse
import csv
import sys

MEMORY_KERNELS = ("rmsnorm", "add (residual)", "add_rmsnorm", "rope", "silu_mul")
MODEL_NAMES = {"deepseek-v3.2": "DeepSeek-V3.2", "llama-3.1-70b": "Llama-3.1-70B", "qwen3-235b-a22b": "Qwen3-235B-A22B"}


def rate(row):
    per_s = float(row["rate_per_s"])
    return f"{per_s / 1e12:.1f} TFLOP/s" if row["unit"] == "flop" else f"{per_s / 1e9:,.0f} GB/s"


def target(row):
    if not row["target"]:
        return ""
    verdict = "meets" if row["status"].startswith("meets") else "**below**"
    unit = "of copy" if row["versus"] == "copy" else "of GEMM"
    return f"{verdict} (≥ {float(row['target']):.2f} {unit})"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--memory-only", action="store_true")
    p.add_argument("--match", action="append", default=[])
    a = p.parse_args()
    try:
        rows = list(csv.DictReader(open(a.csv, newline="")))
    except OSError as e:
        sys.exit(f"kernels-table: {a.csv}: {e.strerror}")
    if rows and "prompt_tokens" not in rows[0]:
        sys.exit(f"kernels-table: {a.csv} has no prompt_tokens column (written by bench_kernels before 2026-11-29)")
    header = ["kernel", "model", "shape", "time ms", "rate", "fraction of ceiling", "of a copy of its bytes",
              "anchor", "issue 6 target"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        name = r["kernel"]
        if a.match:
            if not any(m in name for m in a.match):
                continue
        elif name.startswith("grouped GEMM") or " fp8 " in name or name.endswith(" bf16"):
            continue
        if a.memory_only and name not in MEMORY_KERNELS:
            continue
        if r["prompt_tokens"] != str(a.tokens):
            continue
        at_size = r.get("fraction_of_copy_at_size", "")
        cells = [name, MODEL_NAMES.get(r["model"], r["model"]), r["shape"], f"{float(r['time_s']) * 1e3:.3f}", rate(r),
                 f"{float(r['fraction']):.2f} of {r['versus']}", f"{float(at_size):.2f}" if at_size else "",
                 r["anchor"], target(r)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
