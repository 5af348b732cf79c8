#!/usr/bin/env bash
# The layering rule: no SimGrid, CUDA or NCCL header outside sim/ and backend/cuda/; the backend API header is
# free of them too. Prints the offending lines and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='#include *[<"](simgrid/|cuda|nccl|cublas|cudnn|cuda_runtime)'
bad=$(grep -rnE "$pattern" topology models traces cli backend/backend.hpp bench 2>/dev/null | grep -v '^bench/gpu/' || true)
if [ -n "$bad" ]; then
  echo "layering violation: SimGrid/CUDA/NCCL headers outside sim/ and backend/cuda/:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "layering: ok"
