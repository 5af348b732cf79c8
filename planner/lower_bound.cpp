#include "planner/lower_bound.hpp"

#include <algorithm>
#include <numeric>

#include "topology/error.hpp"

namespace paratwin::plan {

double compute_lower_bound_s(const ParallelConfig& config, const std::vector<std::vector<double>>& compute_s) {
  PARATWIN_ASSERT(static_cast<int>(compute_s.size()) == config.world(), "{} ranks of compute for a world of {}",
                  compute_s.size(), config.world());
  const auto total = [](const std::vector<double>& per_micro_batch) {
    return std::accumulate(per_micro_batch.begin(), per_micro_batch.end(), 0.0);
  };
  double bound_s = 0;
  for (const auto& rank : compute_s) bound_s = std::max(bound_s, total(rank));
  if (config.pp_size == 1) return bound_s;
  for (int position = 0; position < config.tp_size; ++position) {
    const auto stage = [&](int s) -> const std::vector<double>& {
      return compute_s[static_cast<std::size_t>(s * config.tp_size + position)];
    };
    for (int turn = 0; turn < config.pp_size; ++turn) {
      double path_s = total(stage(turn));
      for (int s = 0; s < turn; ++s) path_s += stage(s).front();
      for (int s = turn + 1; s < config.pp_size; ++s) path_s += stage(s).back();
      bound_s = std::max(bound_s, path_s);
    }
  }
  return bound_s;
}

}  // namespace paratwin::plan
