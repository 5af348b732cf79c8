#pragma once
/// `paratwin plan`'s engine: enumerate, filter, bound, simulate in a process pool (optionally over MPI ranks), rank
/// (docs/plan.md). Writes nothing itself: the caller saves the results file text it is handed.
///
///   PlanRequest request = ...;
///   PlanRun run;            // jobs, resume text, save callback, progress stream, interruption flag
///   PlanResult result = run_plan(request, run);
///   result.ranking.layouts.front()   // the best layout

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "planner/evaluate.hpp"
#include "planner/layout_space.hpp"
#include "planner/plan_request.hpp"
#include "planner/progress.hpp"
#include "planner/ranking.hpp"

namespace paratwin::plan {

/// A group of cooperating planner processes (MPI ranks): each evaluates its share of every wave and all of them
/// exchange the results, so every rank holds the same state after each wave and rank 0 reports.
class Distribution {
 public:
  virtual ~Distribution() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  /// Every rank's `mine`, in rank order, returned on every rank. Collective: all ranks call it in the same order.
  [[nodiscard]] virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
};

/// How to run a plan.
struct PlanRun {
  int jobs = 1;                            ///< worker processes (per MPI rank)
  std::optional<std::string> resume_text;  ///< a results file to continue (rank 0's; its inputs must match)
  std::string resume_source;               ///< its path, for messages
  /// Called with the results file text after each finished layout and at the end (on rank 0 only); may be empty.
  std::function<void(const std::string&)> save;
  std::ostream* progress = nullptr;      ///< progress display (rank 0 only); nullptr: none
  bool progress_terminal = false;        ///< redraw a bar (stderr is a terminal) or print lines
  std::function<bool()> interrupted;     ///< polled; true stops the plan (Ctrl-C); may be empty
  Distribution* distribution = nullptr;  ///< nullptr: this process alone
};

struct PlanResult {
  std::int64_t generated = 0;  ///< flag sets looked at
  RejectionCounts rejected;
  std::vector<KeptCandidate> kept;               ///< candidates that passed every filter
  std::vector<std::optional<Outcome>> outcomes;  ///< per kept candidate; nullopt when the plan was interrupted first
  std::int64_t simulation_keys = 0;              ///< distinct simulation keys among `kept`
  ProgressCounts counts;
  Ranking ranking;
  bool interrupted = false;
  double wall_s = 0;
};

[[nodiscard]] PlanResult run_plan(const PlanRequest& request, const PlanRun& run);

}  // namespace paratwin::plan
