#include "traces/critical_path.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace paratwin {
namespace {

// Absorbs rounding in times that were computed as sums (an op that starts "at" its predecessor's end).
constexpr double kTimeSlackS = 1e-12;

}  // namespace

CriticalPath find_critical_path(const Trace& trace, const OpInstances& instances) {
  CriticalPath path;
  if (trace.events.empty()) return path;
  const auto& events = trace.events;
  std::size_t last = 0;
  path.start_s = events[0].start_s;
  for (std::size_t i = 0; i < events.size(); ++i) {
    path.start_s = std::min(path.start_s, events[i].start_s);
    if (std::tie(events[i].end_s, events[last].rank) > std::tie(events[last].end_s, events[i].rank)) last = i;
  }
  path.end_s = events[last].end_s;
  path.last_rank = events[last].rank;

  // Per rank, events by end time, to find "the latest end at or before t" by binary search.
  std::map<int, std::vector<std::size_t>> by_end;
  for (std::size_t i = 0; i < events.size(); ++i) by_end[events[i].rank].push_back(i);
  for (auto& [rank, list] : by_end) {
    std::sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
      return std::tie(events[a].end_s, events[a].start_s, events[a].op) <
             std::tie(events[b].end_s, events[b].start_s, events[b].op);
    });
  }
  std::vector<bool> visited(events.size(), false);
  std::size_t step = instances.latest_arrival[instances.instance_of[last]];
  while (true) {
    visited[step] = true;
    path.steps.push_back(step);
    const Event& current = events[step];
    const auto& list = by_end[current.rank];
    auto it = std::upper_bound(list.begin(), list.end(), current.start_s + kTimeSlackS,
                               [&](double t, std::size_t i) { return t < events[i].end_s; });
    // Zero-length events end where they start: skip those already on the path, or the walk would cycle.
    while (it != list.begin() && visited[*std::prev(it)]) --it;
    if (it == list.begin()) break;
    const std::size_t previous = *std::prev(it);
    step = instances.latest_arrival[instances.instance_of[previous]];
    if (visited[step]) break;  // the latest arrival of that call is already on the path: nothing earlier bounds it
  }
  std::reverse(path.steps.begin(), path.steps.end());
  return path;
}

}  // namespace paratwin
