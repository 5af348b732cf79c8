#pragma once
/// The discrete-event core: runs one schedule on the SimGrid platform and returns the raw results. Internal to sim/.
/// SimGrid's engine is a process-wide singleton whose clock is never reset, so run_engine() may run once per
/// process; sim_backend.cpp runs it in a forked child (SimOptions::isolate_process).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/schedule.hpp"
#include "sim/calibration.hpp"
#include "sim/sim_backend.hpp"
#include "topology/placement.hpp"
#include "traces/trace.hpp"

namespace paratwin::sim {

/// Bytes that crossed one link direction.
struct LinkLoad {
  std::string name;
  std::string link_class;
  double bandwidth_bytes_per_s = 0;
  double bytes = 0;
};

struct EngineResult {
  std::vector<Event> events;                    ///< one per op, sorted by (rank, op)
  std::vector<LinkLoad> links;                  ///< every link direction of the platform
  std::map<std::string, int> algorithm_counts;  ///< "all_reduce ring/ll128 (8 ranks, 1 node)" → instances
  std::int64_t simgrid_tasks = 0;               ///< parallel tasks handed to SimGrid
  std::int64_t reused_instances = 0;            ///< isolated instances answered from an identical one
};

/// Checks the schedule against the placement (rank count, GPU numbers) and, when `deep`, the collective and p2p
/// matching and the deps; throws paratwin::Error naming the op and the rule.
void validate_schedule(const Schedule& schedule, const Placement& placement, bool deep);

/// Runs the simulation. Call at most once per process. `layer_weight[layer + 1]` (default 1) multiplies the link
/// bytes of that layer's collectives (fast mode: a simulated layer stands for its reused copies too).
[[nodiscard]] EngineResult run_engine(const Schedule& schedule, const Placement& placement,
                                      const Calibration& calibration, const SimOptions& options,
                                      std::vector<double> layer_weight = {});

}  // namespace paratwin::sim
