#pragma once
/// Builds a SimSummary from a simulation's events. Internal to sim/.

#include <vector>

#include "sim/sim_backend.hpp"
#include "sim/sim_engine.hpp"

namespace paratwin::sim {

[[nodiscard]] SimSummary summarize(const Schedule& schedule, const Placement& placement,
                                   const std::vector<Event>& events, const EngineResult& engine);

}  // namespace paratwin::sim
