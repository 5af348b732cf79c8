#pragma once
/// Which events of a trace are one collective call (docs/compare.md, "Busy time").
///
/// The members of a collective call are the events with the same (kind, name, group) that are the k-th such event on
/// their rank: the schedule gives every call one name and group, and a rank issues its calls in order. Every other
/// event (compute, send/recv: the trace does not name a send's peer) is an instance of its own.

#include <cstddef>
#include <vector>

#include "traces/trace.hpp"

namespace paratwin {

struct OpInstances {
  std::vector<std::size_t> instance_of;           ///< per event index: its instance
  std::vector<std::vector<std::size_t>> members;  ///< per instance: its events (indices into trace.events)
  std::vector<std::size_t> latest_arrival;        ///< per instance: the member that started last
  /// Busy time of event i: end − the latest member start (a collective cannot progress before its last member
  /// arrives, so the time a rank waited for its peers is not counted); for a lone event, its duration.
  [[nodiscard]] double busy_s(const Trace& trace, std::size_t event) const;
};

[[nodiscard]] OpInstances find_op_instances(const Trace& trace);

}  // namespace paratwin
