#pragma once
/// Per-rank totals of a schedule: op counts, FLOPs, HBM bytes, and bytes moved per group family.

#include <array>
#include <cstdint>
#include <vector>

#include "models/schedule.hpp"

namespace paratwin {

struct RankSummary {
  int rank = 0;
  int ops = 0, compute_ops = 0, collectives = 0, p2p_ops = 0;
  double flops = 0;      ///< compute FLOPs
  double hbm_bytes = 0;  ///< compute ops' minimum HBM traffic
  /// Bytes this rank sends per family (NCCL count × sizeof for all-gather/reduce-scatter/all-reduce/broadcast as
  /// defined in schedule.hpp, scaled to the bytes actually leaving the rank: all_gather and reduce_scatter
  /// (n−1)·bytes, ring all_reduce 2(n−1)/n·bytes, all_to_all Σ send_bytes to others), indexed by family_index.
  std::array<double, kFamilyCount> sent_bytes{};
  double p2p_sent_bytes = 0;
};

/// Bytes a rank sends for one collective under the ring/pairwise algorithms (see RankSummary::sent_bytes).
[[nodiscard]] double sent_bytes(const CollectiveOp& op, int position_in_group);

[[nodiscard]] std::vector<RankSummary> summarize(const Schedule& schedule);

}  // namespace paratwin
