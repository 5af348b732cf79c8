#pragma once
/// What `paratwin plan` is asked: a model, a cluster, the node counts to try, a workload and an objective
/// (docs/plan.md). Plain data; the planner's other units read it.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/dtype.hpp"
#include "models/model_spec.hpp"
#include "models/schedule_options.hpp"
#include "topology/cluster.hpp"
#include "topology/sglang_rules.hpp"

namespace paratwin::plan {

/// What the ranking minimizes.
enum class Objective : std::uint8_t {
  kTtft,              ///< time of the step: TTFT in prefill, step time in decode
  kThroughputPerGpu,  ///< tokens per second per GPU (prefill: prompt tokens; decode: generated tokens)
};
[[nodiscard]] std::string_view to_string(Objective objective);
/// Parses "ttft" or "throughput-per-gpu"; throws paratwin::Error naming --objective otherwise.
[[nodiscard]] Objective parse_objective(std::string_view text);

struct PlanRequest {
  ModelSpec model;
  Cluster cluster;               ///< the node type and network; `nodes` is set per node count tried
  std::vector<int> node_counts;  ///< ascending, each ≥ 1: layouts use exactly nodes × gpus_per_node GPUs
  /// The workload: phase, prompt_tokens, batch (requests over the whole deployment), layers, micro_batches, routing.
  /// cp_algorithm, cp_split and moe_mode are ignored: the planner enumerates them.
  ScheduleOptions workload;
  Objective objective = Objective::kTtft;
  SglangVersion sglang_version = SglangVersion::kPr22003;  ///< whose ServerArgs rules a layout must pass
  double mem_fraction_static = 0.88;
  DType kv_dtype = DType::kBf16;
  bool fast = true;    ///< SimOptions::fast: simulate each run of identical layers once
  bool prune = true;   ///< skip layouts whose lower bound cannot reach the top `top` nor the Pareto front
  int top = 10;        ///< layouts the ranking must get exactly right (pruning keeps them)
  int wave_size = 16;  ///< layouts launched between two updates of the pruning bounds (docs/plan.md, "Waves")
};

/// Checks the request (node counts, prompt, batch, top, wave size, memory fraction); throws paratwin::Error naming
/// the flag, its value and the rule.
void validate_request(const PlanRequest& request);

}  // namespace paratwin::plan
