#pragma once
/// How one rank's schedule becomes stream work: the launches in issue order (one op, or the P2P ops of one group
/// posted together in one ncclGroupStart/End), and for each launch the cudaEvent waits its cross-stream
/// dependencies need. Same-stream dependencies are implied by stream order; of the dependencies on the other
/// stream only the latest one is waited for (the other stream runs in order), and not again when an earlier
/// launch on this stream already waited for it or for a later op. Plain data, no CUDA.

#include <vector>

#include "models/schedule.hpp"

namespace paratwin::cuda_plan {

struct Launch {
  std::vector<int> ops;  ///< op indices launched together (ascending, adjacent)
  Stream stream = Stream::kCompute;
  int wait_for = -1;  ///< op on the other stream whose completion event this launch waits for; -1: none
  friend bool operator==(const Launch&, const Launch&) = default;
};

struct EventPlan {
  std::vector<Launch> launches;
  std::vector<int> launch_of;          ///< per op: index of its launch
  std::vector<bool> needs_done_event;  ///< per op: some launch waits for it (the light mode records only these)
  int waits = 0;                       ///< cudaStreamWaitEvent calls per step
};

/// Throws paratwin::Error naming the op for a dependency that is not an earlier op of the rank, or a P2P group
/// whose members are not adjacent or not all on the comm stream.
[[nodiscard]] EventPlan plan_events(const std::vector<Op>& ops, int rank);

}  // namespace paratwin::cuda_plan
