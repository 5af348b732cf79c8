#!/usr/bin/env bash
# catch_discover_tests turns each Catch2 test case into a ctest entry whose filter is the test's name; a ';' in a
# name splits it (CMake lists), so the entry matches no test and passes without running anything; a name that starts
# with '-' reaches the test binary as an option ("--help" prints the usage and exits 0: a pass that ran nothing).
# Refuse such names.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(grep -rnE 'TEST_CASE\("[^"]*;' tests || true)
if [ -n "$bad" ]; then
  echo "test names must not contain ';' (ctest would run nothing for them):" >&2
  echo "$bad" >&2
  exit 1
fi
bad=$(grep -rnE 'TEST_CASE\("-' tests || true)
if [ -n "$bad" ]; then
  echo "test names must not start with '-' (the test binary would take them for an option):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "test names: ok"
