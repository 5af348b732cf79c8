#!/usr/bin/env python3
"""Rank 0's DSA ops in a `paratwin run --trace` file (docs/trace-format.md): per op of the indexer (idx.*), the top-k
and the sparse attention, its duration, dtype and rate (TFLOP/s from the op's flops, GB/s from its bytes where it has
no flops), then the median step and the indexer's share of it. Usage: indexer-ops.py TRACE.json"""
import json
import sys


def main(path):
    with open(path) as f:
        trace = json.load(f)
    step_ms = float(trace["metadata"].get("extra", {}).get("median_step_s", "nan")) * 1e3
    indexer_ms = 0.0
    print(f"{'op':<32} {'dtype':<6} {'ms':>9} {'rate':>16}")
    for e in trace["traceEvents"]:
        if e.get("ph") != "X" or e["args"].get("rank") != 0 or e["args"].get("stream") != "compute":
            continue
        name, args = e["name"], e["args"]
        if "idx." not in name and args.get("kind") not in ("indexer_score", "topk", "sparse_attention"):
            continue
        ms = e["dur"] / 1e3  # microseconds in the file
        if args.get("kind") == "indexer_score":
            indexer_ms += ms
        if args.get("flops", 0) > 0 and args.get("kind") != "topk":
            rate = f"{args['flops'] / (ms * 1e-3) / 1e12:.1f} TFLOP/s"
        else:
            rate = f"{args.get('bytes', 0) / (ms * 1e-3) / 1e9:.0f} GB/s"
        print(f"{name:<32} {args.get('dtype', ''):<6} {ms:>9.3f} {rate:>16}")
    print(f"median step {step_ms:.3f} ms; indexer scores {indexer_ms:.3f} ms ({100 * indexer_ms / step_ms:.1f} %)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
