// NVLink SHARP (NVLS) inside one NVSwitch domain: the switch reduces and multicasts, so each GPU pushes its buffer
// up once and pulls the result down once. Expressed as one flow per GPU to its neighbour, which loads every up and
// every down link with the per-rank bytes; NCCL's NVLS bandwidth (the cap) sets the pace.

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {

void add_nvls_flows(const GroupGeometry& group, double up_bytes_per_rank, std::vector<Flow>& flows) {
  const int n = group.size();
  if (n <= 1 || up_bytes_per_rank <= 0) return;
  for (int i = 0; i < n; ++i) {
    flows.push_back(Flow{group.gpus[static_cast<std::size_t>(i)], group.gpus[static_cast<std::size_t>((i + 1) % n)],
                         up_bytes_per_rank});
  }
}

}  // namespace paratwin::sim
