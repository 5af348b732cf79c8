#include "traces/op_instances.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <tuple>

namespace paratwin {

double OpInstances::busy_s(const Trace& trace, std::size_t event) const {
  const Event& last = trace.events[latest_arrival[instance_of[event]]];
  return std::max(0.0, trace.events[event].end_s - std::max(trace.events[event].start_s, last.start_s));
}

OpInstances find_op_instances(const Trace& trace) {
  OpInstances out;
  out.instance_of.resize(trace.events.size());
  // Visit events per rank in op order, so "the k-th call with this key on the rank" is well defined.
  std::vector<std::size_t> order(trace.events.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::tie(trace.events[a].rank, trace.events[a].op) < std::tie(trace.events[b].rank, trace.events[b].op);
  });
  using CallKey = std::tuple<std::string, std::string, std::string, int>;  // kind, name, group, occurrence
  std::map<CallKey, std::size_t> instance_by_key;
  std::map<std::tuple<int, std::string, std::string, std::string>, int> occurrences;  // rank, kind, name, group
  for (const std::size_t i : order) {
    const Event& e = trace.events[i];
    std::size_t instance = out.members.size();
    if (!e.group.empty()) {
      const int occurrence = occurrences[{e.rank, e.kind, e.name, e.group}]++;
      instance = instance_by_key.try_emplace(CallKey{e.kind, e.name, e.group, occurrence}, instance).first->second;
    }
    if (instance == out.members.size()) out.members.emplace_back();
    out.members[instance].push_back(i);
    out.instance_of[i] = instance;
  }
  out.latest_arrival.resize(out.members.size());
  for (std::size_t k = 0; k < out.members.size(); ++k) {
    // Ties go to the lowest rank, so the choice does not depend on the order events were listed in.
    out.latest_arrival[k] = *std::min_element(out.members[k].begin(), out.members[k].end(), [&](auto a, auto b) {
      const Event& x = trace.events[a];
      const Event& y = trace.events[b];
      return x.start_s != y.start_s ? x.start_s > y.start_s : x.rank < y.rank;
    });
  }
  return out;
}

}  // namespace paratwin
