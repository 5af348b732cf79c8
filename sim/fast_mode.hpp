#pragma once
/// Fast mode (SimOptions::fast): runs of ≥ 3 consecutive identical layers are simulated as their first two copies;
/// the second copy's events are repeated with the measured layer period, and every later op is shifted by the
/// omitted periods. Internal to sim/.

#include <vector>

#include "models/schedule.hpp"
#include "traces/trace.hpp"

namespace paratwin::sim {

/// A run of identical layers [first, last] on `ranks`; layers first+2..last are not simulated.
struct LayerRun {
  int first = 0;
  int last = 0;
  std::vector<int> ranks;         ///< ranks that have ops in these layers
  std::vector<int> layer_length;  ///< per rank (index into `ranks`): ops per layer
  std::vector<int> second_begin;  ///< per rank: original index of the first op of layer first+1
};

struct ReducedSchedule {
  Schedule schedule;                       ///< the schedule with the repeated layers removed
  std::vector<std::vector<int>> original;  ///< original[rank][reduced index] = original op index
  std::vector<LayerRun> runs;
  std::vector<double> layer_weight;  ///< [layer + 1]: copies a simulated layer stands for
  int layers_reused = 0;
};

/// The reduced schedule, or an empty `runs` when nothing repeats (or the schedule has micro-batches, layers that are
/// not contiguous on a rank, or cross-layer dependencies that differ between copies).
[[nodiscard]] ReducedSchedule reduce_layers(const Schedule& schedule);

/// Rebuilds the full event list from the reduced simulation's events (same order as reduced.schedule).
[[nodiscard]] std::vector<Event> expand_layers(const Schedule& original, const ReducedSchedule& reduced,
                                               const std::vector<Event>& events);

}  // namespace paratwin::sim
