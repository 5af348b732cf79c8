#pragma once
// Small, fast plan requests for the planner tests: zoo models cut to a few layers, short prompts, H200 nodes.

#include <cstdint>
#include <string>

#include "planner/plan_request.hpp"
#include "topology/cluster.hpp"

namespace paratwin::test {

inline plan::PlanRequest small_plan(const std::string& model, int nodes, std::int64_t prompt_tokens, int layers,
                                    int batch = 1) {
  plan::PlanRequest r;
  r.model = load_model(model);
  r.cluster = load_cluster("h200-sxm", nodes);
  r.node_counts = {nodes};
  r.workload.prompt_tokens = prompt_tokens;
  r.workload.layers = layers;
  r.workload.batch = batch;
  return r;
}

}  // namespace paratwin::test
