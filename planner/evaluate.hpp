#pragma once
/// Evaluating one candidate: build its schedule, bound it from its compute (planner/lower_bound.hpp), and simulate it
/// unless the bound proves it cannot matter.
/// Also the canonical key under which equal simulations are shared (docs/plan.md, "Reuse").

#include <cstdint>
#include <limits>
#include <string>

#include "planner/layout_space.hpp"
#include "planner/plan_request.hpp"

namespace paratwin::plan {

/// The canonical simulation key of a candidate. Two candidates with equal keys give identical simulations: the key
/// holds everything a simulation reads that differs between candidates of one plan — the flags of one world (plain
/// DP replicas stripped: each replica is the same world on the same node pattern, which classify() guarantees), the
/// CP algorithm and split, the MoE mode and the requests one world serves. What all candidates share (model,
/// cluster, workload, simulator options) is in the plan's inputs instead.
[[nodiscard]] std::string simulation_key(const PlanRequest& request, const Candidate& candidate);

/// Tokens one step produces over the whole deployment: prefill batch × prompt tokens, decode batch.
[[nodiscard]] double step_tokens(const PlanRequest& request);

/// The objective's score (lower is better): the latency for kTtft, GPU-seconds per token for kThroughputPerGpu.
[[nodiscard]] double objective_score(const PlanRequest& request, double latency_s, int gpus);

/// The pruning cut handed to an evaluation: skip the simulation when the lower bound reaches both cuts (the bound's
/// score cannot enter the top, and its latency cannot beat a layout already simulated on as many GPUs or fewer).
struct PruneCut {
  double score = std::numeric_limits<double>::infinity();
  double latency_s = std::numeric_limits<double>::infinity();
};

enum class OutcomeStatus : std::uint8_t { kSimulated, kPruned, kFailed };
[[nodiscard]] std::string_view to_string(OutcomeStatus status);
/// Parses the names to_string gives; throws paratwin::Error otherwise.
[[nodiscard]] OutcomeStatus parse_outcome_status(std::string_view text);

/// What evaluating a candidate found.
struct Outcome {
  OutcomeStatus status = OutcomeStatus::kFailed;
  double lower_bound_s = 0;   ///< compute_lower_bound_s of the schedule (simulated and pruned)
  double latency_s = 0;       ///< TTFT or step time (simulated)
  double exposed_comm_s = 0;  ///< exposed communication on the critical rank
  double attention_s = 0;     ///< attention kernels (attention, sparse attention, indexer) on the critical rank
  double compute_utilization = 0;
  int layers_reused = 0;  ///< fast mode: layers copied, not simulated
  double wall_s = 0;      ///< host seconds spent on this candidate
  std::string error;      ///< kFailed: the message
  friend bool operator==(const Outcome&, const Outcome&) = default;
};

/// Evaluates `candidate`. `isolate_process` is SimOptions::isolate_process: false only in a process that runs one
/// simulation and exits (a pool child). Simulator errors give kFailed with the message; other errors propagate.
[[nodiscard]] Outcome evaluate(const PlanRequest& request, const Candidate& candidate, const PruneCut& cut,
                               bool isolate_process);

}  // namespace paratwin::plan
