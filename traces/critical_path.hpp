#pragma once
/// The critical path of a trace (docs/compare.md, "Critical path").
///
/// Start at the event that ends last. A collective call cannot finish before its last member arrived, so a
/// collective step is replaced by the instance's latest-arriving member. From a step on rank r that starts at t, the
/// previous step is the event of rank r (either stream) that ended latest at or before t: the op whose end let this
/// one start (its stream predecessor or a dependency). The walk stops when nothing on the rank ended before t. Steps
/// therefore never overlap, and the path's busy times plus its gaps add up to its span.
///
/// Limits: send/recv pairs are not followed across ranks (the trace does not name a send's peer), and a dependency
/// on an op that ended long before the op's stream predecessor is, correctly, never on the path.

#include <cstddef>
#include <vector>

#include "traces/op_instances.hpp"
#include "traces/trace.hpp"

namespace paratwin {

struct CriticalPath {
  std::vector<std::size_t> steps;  ///< indices into trace.events, in time order
  int last_rank = -1;              ///< the rank of the event that ends last (the critical rank)
  double start_s = 0, end_s = 0;   ///< the trace's first start and last end
};

[[nodiscard]] CriticalPath find_critical_path(const Trace& trace, const OpInstances& instances);

}  // namespace paratwin
