// Collapsed ring (all-gather, reduce-scatter, ring all-reduce, ring broadcast): one flow per ring edge carrying
// everything that crosses the edge over all n−1 (or 2(n−1)) pipeline steps. In steady state every step of a ring
// moves the same chunk over every edge, so the ring runs at the rate of its slowest edge; the per-step α is added
// analytically by the planner (simgrid-notes.md: identical simulated time to the per-message ring).

#include <algorithm>

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {

void add_ring_flows(const GroupGeometry& group, double per_rank_bytes, int skip_into, std::vector<Flow>& flows) {
  if (group.size() <= 1 || per_rank_bytes <= 0) return;
  auto push = [&](int src_pos, int dst_pos, double bytes) {
    if (dst_pos == skip_into || src_pos == dst_pos) return;
    flows.push_back(
        Flow{group.gpus[static_cast<std::size_t>(src_pos)], group.gpus[static_cast<std::size_t>(dst_pos)], bytes});
  };
  const std::size_t node_count = group.members_by_node.size();
  if (node_count == 1) {
    const auto& order = group.members_by_node.front();
    for (std::size_t i = 0; i < order.size(); ++i) push(order[i], order[(i + 1) % order.size()], per_rank_bytes);
    return;
  }
  // NCCL's rings enter and leave a node through different GPUs on different channels, so the traffic between two
  // consecutive nodes spreads over their NICs: split the node-to-node hop over min(members) rails.
  for (std::size_t k = 0; k < node_count; ++k) {
    const auto& here = group.members_by_node[k];
    const auto& next = group.members_by_node[(k + 1) % node_count];
    for (std::size_t i = 0; i + 1 < here.size(); ++i) push(here[i], here[i + 1], per_rank_bytes);
    const std::size_t rails = std::min(here.size(), next.size());
    for (std::size_t j = 0; j < rails; ++j) push(here[j], next[j], per_rank_bytes / static_cast<double>(rails));
  }
}

}  // namespace paratwin::sim
