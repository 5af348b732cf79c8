// The kernel tests under compute-sanitizer (scripts/device/sanitize-kernels.sh), whose tools slow kernels 10–100×
// (racecheck more on shared memory): with PARATWIN_GPU_TEST_SMALL=1 in the environment each kernel test skips its
// shapes above a size it names, keeping at least one case of every code path. Unset (the normal run), nothing is
// skipped.
#pragma once

#include <cstdlib>
#include <string_view>

namespace paratwin::test {

inline bool small_shapes_only() {
  const char* v = std::getenv("PARATWIN_GPU_TEST_SMALL");
  return v != nullptr && std::string_view(v) == "1";
}

/// Whether a case of `size` (the test's own measure: elements, or query·key·head triples) runs in this run: always,
/// unless small shapes were asked for and `size` exceeds `small_limit`.
inline bool runs_at_this_size(double size, double small_limit) {
  return !small_shapes_only() || size <= small_limit;
}

}  // namespace paratwin::test
