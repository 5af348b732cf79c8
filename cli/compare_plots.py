"""Pictures of `paratwin compare --plots DIR` (docs/compare.md, "Pictures").

Embedded into the paratwin binary and run as `python3 - DATA.json OUT_DIR`. DATA.json is written by
cli/compare_plots.cpp: {"rank": R, "timelines": {"predicted": [...], "measured": [...]}, "ops": [...]}.
Writes timeline_rank<R>.png, scatter_by_kind.png and error_by_size.png into OUT_DIR.
"""
import json
import sys

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def kind_colors(kinds):
    cmap = plt.get_cmap("tab20")
    return {kind: cmap(i % 20) for i, kind in enumerate(sorted(kinds))}


def timelines(data, out_dir):
    rank = data["rank"]
    traces = data["timelines"]
    colors = kind_colors({e["kind"] for t in traces.values() for e in t})
    fig, axes = plt.subplots(2, 1, figsize=(14, 5), sharex=True)
    for ax, label in zip(axes, ("predicted", "measured")):
        for event in traces[label]:
            lane = 1 if event["stream"] == "comm" else 0
            ax.broken_barh([(event["start_s"] * 1e3, (event["end_s"] - event["start_s"]) * 1e3)], (lane - 0.4, 0.8),
                           facecolors=colors[event["kind"]], edgecolor="none")
        ax.set_yticks([0, 1])
        ax.set_yticklabels(["compute", "comm"])
        ax.set_ylabel(label)
    axes[-1].set_xlabel("time (ms)")
    handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in colors.items()]
    fig.legend(handles=handles, loc="center right", fontsize="small")
    fig.subplots_adjust(right=0.85)  # room for the legend beside the lanes
    fig.suptitle(f"rank {rank}: predicted (top) and measured (bottom)")
    fig.savefig(f"{out_dir}/timeline_rank{rank}.png", dpi=120)
    plt.close(fig)


def scatter_by_kind(data, out_dir):
    ops = [op for op in data["ops"] if op["predicted_s"] > 0 and op["measured_s"] > 0]
    colors = kind_colors({op["kind"] for op in ops})
    fig, ax = plt.subplots(figsize=(7, 7))
    for kind, color in colors.items():
        points = [op for op in ops if op["kind"] == kind]
        ax.scatter([op["measured_s"] * 1e6 for op in points], [op["predicted_s"] * 1e6 for op in points], s=10,
                   color=color, label=kind)
    if ops:
        low = min(min(op["measured_s"], op["predicted_s"]) for op in ops) * 1e6
        high = max(max(op["measured_s"], op["predicted_s"]) for op in ops) * 1e6
        ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="predicted = measured")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured (us)")
    ax.set_ylabel("predicted (us)")
    ax.legend(fontsize="small")
    ax.set_title("predicted vs measured busy time per op")
    fig.savefig(f"{out_dir}/scatter_by_kind.png", dpi=120)
    plt.close(fig)


def error_by_size(data, out_dir):
    ops = [op for op in data["ops"] if op["communication"] and op["relative_error"] is not None
           and op["size_bytes"] > 0]
    colors = kind_colors({op["kind"] for op in ops})
    fig, ax = plt.subplots(figsize=(9, 5))
    for kind, color in colors.items():
        points = [op for op in ops if op["kind"] == kind]
        ax.scatter([op["size_bytes"] for op in points], [op["relative_error"] * 100 for op in points], s=12,
                   color=color, label=kind)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size S (bytes, nccl-tests definition)")
    ax.set_ylabel("relative error (%)")
    if ops:
        ax.legend(fontsize="small")
    ax.set_title("communication: relative error by message size")
    fig.savefig(f"{out_dir}/error_by_size.png", dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_plots.py DATA.json OUT_DIR")
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    timelines(data, sys.argv[2])
    scatter_by_kind(data, sys.argv[2])
    error_by_size(data, sys.argv[2])


main()
