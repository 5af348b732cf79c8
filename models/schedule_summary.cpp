#include "models/schedule_summary.hpp"

#include <algorithm>

namespace paratwin {

double sent_bytes(const CollectiveOp& op, int position_in_group) {
  const auto n = static_cast<double>(op.group_size);
  const auto bytes = static_cast<double>(op.bytes);
  switch (op.kind) {
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      return (n - 1) * bytes;
    case CollectiveKind::kAllReduce:
      return 2 * (n - 1) / n * bytes;
    case CollectiveKind::kBroadcast:
      return op.group_size > 1 ? bytes : 0;
    case CollectiveKind::kAllToAll: {
      double sum = 0;
      for (std::size_t j = 0; j < op.send_bytes.size(); ++j) {
        if (static_cast<int>(j) != position_in_group) sum += static_cast<double>(op.send_bytes[j]);
      }
      return sum;
    }
  }
  return 0;
}

std::vector<RankSummary> summarize(const Schedule& schedule) {
  const RankLayout layout(schedule.meta.config);
  std::vector<RankSummary> out;
  out.reserve(schedule.ranks.size());
  for (std::size_t r = 0; r < schedule.ranks.size(); ++r) {
    RankSummary s;
    s.rank = static_cast<int>(r);
    for (const auto& op : schedule.ranks[r]) {
      ++s.ops;
      if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
        ++s.compute_ops;
        s.flops += c->flops;
        s.hbm_bytes += c->bytes;
      } else if (const auto* k = std::get_if<CollectiveOp>(&op.body)) {
        ++s.collectives;
        const auto& ranks = layout.groups(k->family)[static_cast<std::size_t>(k->group_index)].ranks;
        const auto pos = static_cast<int>(std::find(ranks.begin(), ranks.end(), s.rank) - ranks.begin());
        s.sent_bytes[static_cast<std::size_t>(family_index(k->family))] += sent_bytes(*k, pos);
      } else {
        const auto& p = std::get<P2POp>(op.body);
        ++s.p2p_ops;
        if (p.is_send) s.p2p_sent_bytes += static_cast<double>(p.bytes);
      }
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace paratwin
