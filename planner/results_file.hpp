#pragma once
/// The results file of `paratwin plan --out F` (docs/plan.md, "Resume"): the plan's inputs and every layout finished
/// so far, rewritten after each one, so an interrupted plan continues with --resume. Also the encoding of one
/// Outcome, which worker processes and MPI ranks send back.
///
///   {"format": "paratwin-plan-results/1", "inputs": {...}, "complete": false,
///    "layouts": [{"key": ..., "layouts": [ids...], "status": "simulated", "latency_s": ..., ...}, ...]}

#include <map>
#include <string>
#include <vector>

#include "planner/evaluate.hpp"
#include "planner/plan_request.hpp"

namespace paratwin::plan {

/// The inputs that decide a plan's answer, as a JSON object text keyed by the flag that sets each.
[[nodiscard]] std::string plan_inputs_json(const PlanRequest& request);

/// One finished simulation key with the layouts it answers.
struct FinishedKey {
  std::string key;
  std::vector<std::string> layout_ids;
  Outcome outcome;
};

[[nodiscard]] std::string results_file_text(const PlanRequest& request, const std::vector<FinishedKey>& finished,
                                            bool complete);

/// Reads a results file written for `request`. Throws paratwin::Error naming `source` when the file is not a plan
/// results file, or was written for other inputs (naming the first input that differs, with both values).
[[nodiscard]] std::map<std::string, Outcome> read_results_file(const std::string& text, const PlanRequest& request,
                                                               const std::string& source);

/// An Outcome as one JSON object text (doubles round-trip exactly), and back (throws paratwin::Error when malformed).
[[nodiscard]] std::string encode_outcome(const Outcome& outcome);
[[nodiscard]] Outcome decode_outcome(const std::string& text);

}  // namespace paratwin::plan
