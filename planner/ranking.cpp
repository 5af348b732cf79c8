#include "planner/ranking.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

namespace paratwin::plan {

Ranking rank_layouts(const PlanRequest& request, const std::vector<KeptCandidate>& kept,
                     const std::vector<std::optional<Outcome>>& outcomes) {
  Ranking ranking;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const auto& outcome = outcomes[i];
    if (!outcome || outcome->status != OutcomeStatus::kSimulated) continue;
    RankedLayout layout;
    layout.candidate = kept[i].candidate;
    layout.memory = kept[i].memory;
    layout.outcome = *outcome;
    layout.id = layout.candidate.id(request.model);
    layout.score = objective_score(request, outcome->latency_s, layout.candidate.gpus);
    layout.tokens_per_s_per_gpu =
        outcome->latency_s > 0 ? step_tokens(request) / (outcome->latency_s * layout.candidate.gpus) : 0;
    ranking.layouts.push_back(std::move(layout));
  }
  std::sort(ranking.layouts.begin(), ranking.layouts.end(), [](const RankedLayout& a, const RankedLayout& b) {
    return std::tie(a.score, a.candidate.gpus, a.id) < std::tie(b.score, b.candidate.gpus, b.id);
  });
  std::vector<std::size_t> order(ranking.layouts.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto& layouts = ranking.layouts;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto& x = layouts[a];
    const auto& y = layouts[b];
    return std::tie(x.candidate.gpus, x.outcome.latency_s, x.id) <
           std::tie(y.candidate.gpus, y.outcome.latency_s, y.id);
  });
  double best_latency_s = std::numeric_limits<double>::infinity();
  for (const std::size_t i : order) {
    if (layouts[i].outcome.latency_s < best_latency_s) {
      best_latency_s = layouts[i].outcome.latency_s;
      ranking.pareto.push_back(i);
    }
  }
  return ranking;
}

}  // namespace paratwin::plan
