#pragma once
/// What a schedule is built for, beyond the model and the layout.

#include <cstdint>
#include <optional>

#include "models/schedule.hpp"

namespace paratwin {

/// How tokens pick experts when the schedule needs per-expert loads (seeded, deterministic). kPerToken: each token's
/// experts are a seeded hash of (layer, request, position) (`build::token_experts`), the same on every layout, and
/// the schedule's loads are counted exactly from the tokens each rank holds; the CUDA backend's numerical check
/// routes the real tensors by it (ScheduleMeta::per_token_routing_seed).
enum class RoutingLoad : std::uint8_t { kUniform, kZipf, kPerToken };

struct RoutingOptions {
  RoutingLoad load = RoutingLoad::kUniform;
  double zipf_exponent = 1.0;  ///< kZipf: expert of popularity rank i gets weight 1 / (i+1)^exponent
  std::uint64_t seed = 1;
};

struct ScheduleOptions {
  Phase phase = Phase::kPrefill;
  std::int64_t prompt_tokens = 0;  ///< prefill: tokens per request; decode: context length per request
  int batch = 1;                   ///< requests in the step (across the attention-DP replicas of one world)
  CpAlgorithm cp_algorithm = CpAlgorithm::kAllGather;
  CpSplit cp_split = CpSplit::kRoundRobin;
  std::optional<MoeMode> moe_mode;  ///< default: all-to-all when ep > 1, else gather
  int layers = 0;                   ///< 0: all of the model's layers; else the first `layers` (cut models)
  int micro_batches = 0;            ///< PP chunks of the prompt; 0: pp_size (1 without PP)
  RoutingOptions routing;
};

}  // namespace paratwin
