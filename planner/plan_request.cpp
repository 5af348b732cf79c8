#include "planner/plan_request.hpp"

#include <algorithm>

#include "topology/error.hpp"

namespace paratwin::plan {

std::string_view to_string(Objective objective) {
  switch (objective) {
    case Objective::kTtft:
      return "ttft";
    case Objective::kThroughputPerGpu:
      return "throughput-per-gpu";
  }
  return "?";
}

Objective parse_objective(std::string_view text) {
  if (text == "ttft") return Objective::kTtft;
  if (text == "throughput-per-gpu") return Objective::kThroughputPerGpu;
  fail("--objective '{}' is unknown: use ttft (time of the step) or throughput-per-gpu (tokens/s per GPU)", text);
}

void validate_request(const PlanRequest& r) {
  if (r.node_counts.empty()) fail("plan: no node count to try: give --nodes N or --max-nodes N");
  for (std::size_t i = 0; i < r.node_counts.size(); ++i) {
    const int nodes = r.node_counts[i];
    if (nodes < 1) fail("--nodes {} is invalid: at least one node", nodes);
    if (i > 0 && nodes <= r.node_counts[i - 1]) fail("plan: node counts must ascend without repeats");
    if (static_cast<long long>(nodes) * r.cluster.gpus_per_node > kMaxClusterGpus) {
      fail("--nodes {} × {} GPUs per node exceeds paratwin's limit of {} GPUs", nodes, r.cluster.gpus_per_node,
           kMaxClusterGpus);
    }
  }
  if (r.workload.prompt_tokens < 1) fail("--prompt-len {} is invalid: at least one token", r.workload.prompt_tokens);
  if (r.workload.batch < 1) fail("--batch {} is invalid: at least one request", r.workload.batch);
  if (r.workload.layers < 0 || r.workload.layers > r.model.num_layers) {
    fail("--layers {} is invalid for {}: between 1 and its {} layers (0 means all)", r.workload.layers, r.model.name,
         r.model.num_layers);
  }
  if (r.top < 1) fail("--top {} is invalid: show at least one layout", r.top);
  if (r.wave_size < 1) fail("--wave-size {} is invalid: at least one layout per wave", r.wave_size);
  if (!(r.mem_fraction_static > 0 && r.mem_fraction_static < 1)) {
    fail("--mem-fraction-static {} is invalid: a fraction strictly between 0 and 1", r.mem_fraction_static);
  }
}

}  // namespace paratwin::plan
