#pragma once
/// The cheap bound the planner prunes with (docs/plan.md, "Pruning"): how long a schedule must take at least, from
/// its compute alone, timed as the simulator times it (sim::compute_stream_s), without simulating.

#include <vector>

#include "models/schedule.hpp"

namespace paratwin::plan {

/// The larger of two bounds on the end-to-end time, from compute seconds [rank][micro_batch]:
///  - the busiest rank: each rank runs its compute ops one at a time;
///  - the pipeline: micro-batch k enters stage s + 1 only after stage s finished it, so for every PP group and every
///    stage j, the first micro-batch's compute on stages before j, all micro-batches on stage j, and the last
///    micro-batch's compute on stages after j run one after the other (the classic fill-and-drain bound).
/// Ranks are numbered PP-outermost (rank = stage × tp_size + position), as SGLang numbers them.
[[nodiscard]] double compute_lower_bound_s(const ParallelConfig& config,
                                           const std::vector<std::vector<double>>& compute_s);

}  // namespace paratwin::plan
