#pragma once
/// The layouts `paratwin plan` considers, and why the others are left out (docs/plan.md, "What is enumerated").
///
/// A candidate is one SGLang launch: the parallel flags (tp, pp, dp with or without DP-attention, attn_cp, ep,
/// moe_dp), the CP algorithm and token split when attn_cp > 1 in prefill, and the MoE mode for MoE models, using
/// exactly nodes × gpus_per_node GPUs. classify() decides, in this order, whether it is
///   structural — broken sizes (structural_errors), a layout paratwin does not simulate faithfully, a workload that
///                does not split over it, or a model that does not split over it (the schedule builder's and the
///                memory model's checks);
///   sglang     — refused by a ServerArgs rule of the requested SGLang version (check_sglang_rules), or by what
///                DeepSeek-V3.2's NSA prefill CP asserts or forces in that version (attn_cp = tp / dp, one node at
///                the merge, dp 1 for round-robin-split, ep = tp with DeepEP and bf16 KV for in-seq-split);
///   memory     — over the GPU's memory on some pipeline stage (estimate_memory_per_stage);
/// or kept.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/schedule.hpp"
#include "planner/plan_request.hpp"
#include "topology/parallel_config.hpp"

namespace paratwin::plan {

/// One layout to rank.
struct Candidate {
  ParallelConfig config;  ///< SGLang's flags; plain DP (no DP-attention) launches dp_size replicas of the world
  CpAlgorithm cp_algorithm = CpAlgorithm::kAllGather;
  CpSplit cp_split = CpSplit::kRoundRobin;
  MoeMode moe_mode = MoeMode::kGather;
  int nodes = 1;
  int gpus = 0;  ///< replicas × world

  /// The options of the schedule of one replica (one world): batch = the deployment's batch / replicas.
  [[nodiscard]] ScheduleOptions schedule_options(const PlanRequest& request) const;
  /// SGLang launch flags, ready to paste: the parallel flags, then the CP mode flags (--enable-nsa-prefill-context-
  /// parallel/--nsa-prefill-cp-mode for DSA models, --enable-prefill-context-parallel/--prefill-cp-mode otherwise)
  /// and --moe-a2a-backend deepep for the all-to-all MoE mode.
  [[nodiscard]] std::string sglang_flags(const ModelSpec& model) const;
  /// The choices SGLang has no flag for ("--cp-algo ring --cp-split zigzag"), "" for SGLang's own all-gather CP.
  [[nodiscard]] std::string paratwin_only_flags() const;
  /// Unique, stable name: "n2 " + the flags of both kinds (what the results file and the ranking print).
  [[nodiscard]] std::string id(const ModelSpec& model) const;
  friend bool operator==(const Candidate&, const Candidate&) = default;
};

enum class RejectCategory : std::uint8_t { kStructural, kSglangRule, kMemory };
[[nodiscard]] std::string_view to_string(RejectCategory category);

/// Why a candidate is left out: its category and one sentence (flags, values, rule).
struct Rejection {
  RejectCategory category = RejectCategory::kStructural;
  std::string reason;
};

/// The memory verdict of a kept candidate (worst pipeline stage).
struct MemorySummary {
  double peak_bytes = 0;      ///< the largest per-rank total over stages
  double capacity_bytes = 0;  ///< one GPU
  /// The smallest margin left over all stages: min(static budget − weights − KV, dynamic budget − activations).
  double headroom_bytes = 0;
};

/// classify()'s answer: a rejection, or the memory summary of a kept candidate.
struct Classification {
  std::optional<Rejection> rejection;
  MemorySummary memory;
};

/// Decides whether `candidate` is kept (see the file comment for the order of the checks).
[[nodiscard]] Classification classify(const PlanRequest& request, const Candidate& candidate);

/// Every flag set of `nodes` nodes the planner looks at, before classification: all divisor-consistent
/// (pp, replicas or DP-attention dp, attn_cp, ep, moe_dp) combinations, times the CP and MoE-mode choices.
[[nodiscard]] std::vector<Candidate> generate_candidates(const PlanRequest& request, int nodes);

/// generate_candidates(request, nodes).size(), counted without building the candidates.
[[nodiscard]] std::int64_t candidate_count(const PlanRequest& request, int nodes);

/// The most flag sets one plan looks at, over all its node counts. Classifying one takes ~0.5 µs (docs/performance.md,
/// "Planner"), so this is under a minute; the count grows faster than the GPUs (DeepSeek-V3.2 on 8-GPU nodes: 20.1
/// million up to 96 nodes, 98.1 million up to 233), and a request beyond it is refused before any work rather than
/// running for hours.
inline constexpr std::int64_t kMaxFlagSets = 100'000'000;

/// Refuses (paratwin::Error naming --nodes / --max-nodes and the limit) a request of more than kMaxFlagSets flag sets.
void check_enumeration_size(const PlanRequest& request);

/// A kept candidate with its memory summary.
struct KeptCandidate {
  Candidate candidate;
  MemorySummary memory;
};

/// Rejections counted by category, with up to a few example reasons each (in generation order).
struct RejectionCounts {
  std::map<RejectCategory, std::int64_t> count;
  std::map<RejectCategory, std::vector<std::string>> examples;
  [[nodiscard]] std::int64_t total() const;
};

/// The layout space of a request: generated over every node count, classified.
struct LayoutSpace {
  std::int64_t generated = 0;
  std::vector<KeptCandidate> kept;
  RejectionCounts rejected;
  bool interrupted = false;  ///< `interrupted` answered true: the space holds what was classified until then
};

/// check_enumeration_size, then every candidate of every node count, classified. `interrupted` (may be empty) is
/// polled every 65,536 candidates, so that Ctrl-C or SIGTERM stops a long enumeration too.
[[nodiscard]] LayoutSpace enumerate_layouts(const PlanRequest& request, const std::function<bool()>& interrupted = {});

}  // namespace paratwin::plan
