#pragma once
/// Ranking simulated layouts by the objective, and the Pareto front of latency against GPUs.

#include <optional>
#include <string>
#include <vector>

#include "planner/evaluate.hpp"
#include "planner/layout_space.hpp"

namespace paratwin::plan {

/// One simulated layout with what the report prints.
struct RankedLayout {
  Candidate candidate;
  MemorySummary memory;
  Outcome outcome;
  std::string id;
  double score = 0;                 ///< objective_score (lower is better)
  double tokens_per_s_per_gpu = 0;  ///< step_tokens / (latency × GPUs)
};

struct Ranking {
  std::vector<RankedLayout> layouts;  ///< every simulated layout, best score first (ties: fewer GPUs, then id)
  /// Indices into `layouts` of the Pareto front of latency against GPUs: fewest GPUs first, each entry strictly
  /// faster than every layout on as many GPUs or fewer.
  std::vector<std::size_t> pareto;
};

/// Ranks the simulated outcomes (outcomes[i] belongs to kept[i]; pruned, failed and missing ones are left out).
[[nodiscard]] Ranking rank_layouts(const PlanRequest& request, const std::vector<KeptCandidate>& kept,
                                   const std::vector<std::optional<Outcome>>& outcomes);

}  // namespace paratwin::plan
