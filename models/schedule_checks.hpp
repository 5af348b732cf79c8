#pragma once
/// The contract of the schedule IR, checked on any schedule (built or loaded from JSON):
///  - ops are numbered by position, depend only on earlier ops, and sit on the stream their body needs;
///  - every collective instance is issued exactly once by every rank of its group, with the same kind, family,
///    size, dtype and bytes (all-to-all: what i sends to j is what j receives from i), and every member issues the
///    group's collectives in the same order;
///  - every send has its recv (same match, bytes, mirrored peers);
///  - the whole step can run: the graph of stream order, dependencies, collective rendezvous and send/recv pairs is
///    acyclic, so no rank waits forever (no deadlock by construction).

#include <string>
#include <vector>

#include "models/schedule.hpp"

namespace paratwin {

/// Every violation, one sentence each (at most a few dozen); empty when the schedule is sound.
[[nodiscard]] std::vector<std::string> schedule_violations(const Schedule& schedule);

}  // namespace paratwin
