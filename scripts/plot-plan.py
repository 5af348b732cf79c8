#!/usr/bin/env python3
"""Plots a `paratwin plan` ranking: every simulated layout as a point (GPUs, latency) and the Pareto front as a line.

Usage: plot-plan.py RANKING.csv OUT.png [TITLE]   (the CSV of `paratwin plan --csv`; paratwin plan --plot runs this)
Exit status 3 when matplotlib is missing (Debian: apt-get install python3-matplotlib).
"""
import csv
import os
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        print(f"matplotlib is missing ({error})", file=sys.stderr)
        return 3
    csv_path, png_path = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "paratwin plan"
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"{csv_path}: no simulated layout to plot", file=sys.stderr)
        return 1
    gpus = [int(r["gpus"]) for r in rows]
    latency_ms = [float(r["latency_s"]) * 1e3 for r in rows]
    front = sorted((int(r["gpus"]), float(r["latency_s"]) * 1e3,
                    r["sglang_flags"] + (f" [paratwin only: {r['paratwin_only_flags']}]" if r["paratwin_only_flags"] else ""))
                   for r in rows if r["pareto"] == "1")

    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.scatter(gpus, latency_ms, s=14, alpha=0.45, color="tab:gray", label="simulated layouts")
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="tab:red", label="Pareto front")
    for g, ms, flags in front:
        ax.annotate(flags.replace(" --", "\n--").strip(), (g, ms), textcoords="offset points", xytext=(6, 4),
                    fontsize=6)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(gpus))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("latency (ms): TTFT or step time")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    temp = png_path + ".paratwin-tmp.png"
    fig.savefig(temp, dpi=130)
    os.replace(temp, png_path)  # nothing half-written under the requested name
    return 0


if __name__ == "__main__":
    sys.exit(main())
