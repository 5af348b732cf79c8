#pragma once
/// The size at which a compute op reads its kind's efficiency curves (docs/sim.md §4): the sim's compute model reads
/// them there, and both backends record it in their traces (args.size) so that `paratwin calibrate` can fit the
/// curves from measurements. In models/ because both backends need it and neither may include the other.

#include "models/schedule.hpp"

namespace paratwin {

/// gemm: m; grouped_gemm: mean rows per group; attention: kv_tokens; sparse_attention and indexer_score: q_tokens;
/// every other kind: HBM bytes. Never below 1.
[[nodiscard]] double efficiency_curve_size(const ComputeOp& op);

}  // namespace paratwin
