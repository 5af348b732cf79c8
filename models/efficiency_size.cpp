#include "models/efficiency_size.hpp"

#include <algorithm>
#include <numeric>

namespace paratwin {

double efficiency_curve_size(const ComputeOp& op) {
  const ComputeShape& s = op.shape;
  switch (op.kind) {
    case ComputeKind::kGemm:
      return static_cast<double>(std::max<std::int64_t>(s.m, 1));
    case ComputeKind::kGroupedGemm: {
      const auto groups = static_cast<std::int64_t>(s.group_rows.size());
      if (groups == 0) return static_cast<double>(std::max<std::int64_t>(s.m, 1));
      const std::int64_t rows = std::accumulate(s.group_rows.begin(), s.group_rows.end(), std::int64_t{0});
      return std::max(1.0, static_cast<double>(rows) / static_cast<double>(groups));
    }
    case ComputeKind::kAttention:
      return static_cast<double>(std::max<std::int64_t>(s.kv_tokens, 1));
    case ComputeKind::kSparseAttention:
    case ComputeKind::kIndexerScore:
      return static_cast<double>(std::max<std::int64_t>(s.q_tokens, 1));
    default:
      return std::max(1.0, op.bytes);
  }
}

}  // namespace paratwin
