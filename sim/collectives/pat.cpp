// PAT (Parallel Aggregated Trees, NCCL ≥ 2.23), used by all-gather and reduce-scatter with one GPU per node:
// Bruck-like distance doubling, step k sending min(2^k, n − 2^k) chunks to the rank 2^k away. Collapsed: one flow
// per (rank, step).

#include <algorithm>

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {

void add_pat_flows(const GroupGeometry& group, double chunk_bytes, std::vector<Flow>& flows) {
  const int n = group.size();
  if (n <= 1 || chunk_bytes <= 0) return;
  for (int distance = 1; distance < n; distance *= 2) {
    const double bytes = chunk_bytes * std::min(distance, n - distance);
    for (int i = 0; i < n; ++i) {
      flows.push_back(Flow{group.gpus[static_cast<std::size_t>(i)],
                           group.gpus[static_cast<std::size_t>((i + distance) % n)], bytes});
    }
  }
}

}  // namespace paratwin::sim
