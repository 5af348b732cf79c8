#!/usr/bin/env bash
# The layering rules: no SimGrid, CUDA or NCCL header outside sim/ and backend/cuda/ (the backend API header and the
# planner are free of them too); mpi.h only in cli/mpi_world.cpp; the planner never includes the CLI. Prints the
# offending lines and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
pattern='#include *[<"](simgrid/|cuda|nccl|cublas|cudnn|cuda_runtime)'
bad=$(grep -rnE "$pattern" topology models traces planner cli backend/backend.hpp bench 2>/dev/null | grep -v '^bench/gpu/' || true)
if [ -n "$bad" ]; then
  echo "layering violation: SimGrid/CUDA/NCCL headers outside sim/ and backend/cuda/:" >&2
  echo "$bad" >&2
  status=1
fi
bad=$(grep -rnE '#include *[<"]mpi\.h' topology models traces sim planner cli backend bench 2>/dev/null |
      grep -v '^cli/mpi_world.cpp:' || true)
if [ -n "$bad" ]; then
  echo "layering violation: mpi.h outside cli/mpi_world.cpp:" >&2
  echo "$bad" >&2
  status=1
fi
bad=$(grep -rnE '#include *"cli/' topology models traces sim planner 2>/dev/null || true)
if [ -n "$bad" ]; then
  echo "layering violation: a library below cli/ includes the CLI:" >&2
  echo "$bad" >&2
  status=1
fi
[ $status -eq 0 ] && echo "layering: ok"
exit $status
