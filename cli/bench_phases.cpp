#include "cli/bench_phases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <variant>
#include <vector>

#include "models/schedule_json.hpp"
#include "topology/error.hpp"

namespace paratwin::cli {
namespace {

// The collectives (and point-to-point ops) that open rank `rank`'s ops in the sweep: the compute ops follow them.
int leading_communication_ops(const Schedule& sweep, int rank) {
  const auto& ops = sweep.ranks[static_cast<std::size_t>(rank)];
  const auto first_compute = std::find_if(
      ops.begin(), ops.end(), [](const Op& op) { return std::holds_alternative<ComputeOp>(op.body); });
  for (auto it = first_compute; it != ops.end(); ++it) {
    if (!std::holds_alternative<ComputeOp>(it->body)) {
      throw InternalError(fmt::format("bench sweep rank {}: op '{}' communicates after a compute op", rank, it->name));
    }
  }
  return static_cast<int>(first_compute - ops.begin());
}

// Checks that `e` is of one of the sweep's ranks.
void check_rank(const Schedule& sweep, const Event& e, const char* phase) {
  if (e.rank < 0 || static_cast<std::size_t>(e.rank) >= sweep.ranks.size()) {
    throw InternalError(fmt::format("bench {} phase: event '{}' of rank {}, which the sweep of {} ranks lacks", phase,
                                    e.name, e.rank, sweep.ranks.size()));
  }
}

// Checks that `e` (of one of the sweep's ranks), moved to op index `op`, names the sweep's op there.
void check_place(const Schedule& sweep, const Event& e, int op, const char* phase) {
  const auto& ops = sweep.ranks[static_cast<std::size_t>(e.rank)];
  if (op < 0 || static_cast<std::size_t>(op) >= ops.size() || ops[static_cast<std::size_t>(op)].name != e.name) {
    throw InternalError(fmt::format("bench {} phase: event '{}' of rank {} is not the sweep's op {}", phase, e.name,
                                    e.rank, op));
  }
}

}  // namespace

Trace join_bench_phases(const Schedule& sweep, const Trace& collectives, const Trace& compute) {
  Trace joined;
  joined.meta = compute.meta;
  joined.meta.schedule_hash = schedule_hash(sweep);
  for (const auto& [phase, trace] : {std::pair<const char*, const Trace*>{"collective", &collectives},
                                     {"compute", &compute}}) {
    const auto step = trace->meta.extra.find("median_step_s");
    if (step != trace->meta.extra.end()) joined.meta.extra[fmt::format("{}_phase_median_step_s", phase)] = step->second;
  }
  joined.meta.extra.erase("median_step_s");
  joined.meta.extra["bench_phases"] = "collectives, then compute kernels, each with its own steps";
  double collective_end_s = 0;
  for (const Event& e : collectives.events) {
    check_rank(sweep, e, "collective");
    check_place(sweep, e, e.op, "collective");
    collective_end_s = std::max(collective_end_s, e.end_s);
    joined.events.push_back(e);
  }
  std::vector<int> communication_ops;  // per rank, once
  for (std::size_t r = 0; r < sweep.ranks.size(); ++r) {
    communication_ops.push_back(leading_communication_ops(sweep, static_cast<int>(r)));
  }
  for (Event e : compute.events) {
    check_rank(sweep, e, "compute");
    e.op += communication_ops[static_cast<std::size_t>(e.rank)];
    check_place(sweep, e, e.op, "compute");
    e.start_s += collective_end_s;
    e.end_s += collective_end_s;
    joined.events.push_back(std::move(e));
  }
  std::size_t sweep_ops = 0;
  for (const auto& ops : sweep.ranks) sweep_ops += ops.size();
  if (joined.events.size() != sweep_ops) {
    throw InternalError(fmt::format("bench phases: {} events for the sweep's {} ops", joined.events.size(), sweep_ops));
  }
  std::sort(joined.events.begin(), joined.events.end(),
            [](const Event& a, const Event& b) { return std::tie(a.rank, a.op) < std::tie(b.rank, b.op); });
  return joined;
}

}  // namespace paratwin::cli
