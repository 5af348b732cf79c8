#include "backend/cuda_plan/event_plan.hpp"

#include <algorithm>
#include <array>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {
namespace {

std::int64_t p2p_group(const Op& op) {
  const auto* p = std::get_if<P2POp>(&op.body);
  return p != nullptr ? p->group : -1;
}

}  // namespace

EventPlan plan_events(const std::vector<Op>& ops, int rank) {
  EventPlan plan;
  const int n = static_cast<int>(ops.size());
  plan.launch_of.assign(ops.size(), -1);
  plan.needs_done_event.assign(ops.size(), false);
  // Latest op of the other stream already waited for, per stream.
  std::array<int, 2> waited = {-1, -1};
  for (int i = 0; i < n;) {
    const auto& first = ops[static_cast<std::size_t>(i)];
    if (first.index != i) fail("rank {} op at position {} has index {}", rank, i, first.index);
    Launch launch;
    launch.stream = first.stream;
    launch.ops.push_back(i);
    const auto group = p2p_group(first);
    int j = i + 1;
    if (group >= 0) {
      while (j < n && p2p_group(ops[static_cast<std::size_t>(j)]) == group) launch.ops.push_back(j++);
      for (int k = j; k < n; ++k) {
        if (p2p_group(ops[static_cast<std::size_t>(k)]) == group) {
          fail("rank {} P2P group {}: op {} '{}' is not adjacent to the group's first op {} '{}'", rank, group, k,
               ops[static_cast<std::size_t>(k)].name, i, first.name);
        }
      }
    }
    int latest_other = -1;
    for (const int m : launch.ops) {
      const auto& op = ops[static_cast<std::size_t>(m)];
      if (op.stream != launch.stream) fail("rank {} P2P group {} mixes streams at op {} '{}'", rank, group, m, op.name);
      for (const int d : op.deps) {
        if (d < 0 || d >= i) {
          fail("rank {} op {} '{}' depends on op {}, which is not an earlier op outside its P2P group", rank, m,
               op.name, d);
        }
        if (ops[static_cast<std::size_t>(d)].stream != launch.stream) latest_other = std::max(latest_other, d);
      }
    }
    const auto s = static_cast<std::size_t>(launch.stream);
    if (latest_other > waited[s]) {
      launch.wait_for = latest_other;
      waited[s] = latest_other;
      plan.needs_done_event[static_cast<std::size_t>(latest_other)] = true;
      ++plan.waits;
    }
    for (const int m : launch.ops) plan.launch_of[static_cast<std::size_t>(m)] = static_cast<int>(plan.launches.size());
    plan.launches.push_back(std::move(launch));
    i = j;
  }
  return plan;
}

}  // namespace paratwin::cuda_plan
