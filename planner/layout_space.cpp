#include "planner/layout_space.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "models/memory_model.hpp"
#include "models/schedule_builder.hpp"
#include "topology/error.hpp"

namespace paratwin::plan {
namespace {

constexpr std::size_t kExamplesPerCategory = 3;

constexpr std::int64_t kCandidatesPerInterruptPoll = 1 << 16;

// Ascending; in O(√n) steps, since clusters of up to kMaxClusterGpus GPUs call it in nested loops.
std::vector<int> divisors(int n) {
  std::vector<int> small, large;
  for (int d = 1; d <= n / d; ++d) {
    if (n % d != 0) continue;
    small.push_back(d);
    if (d != n / d) large.push_back(n / d);
  }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}

// The DP choices of `gpus / pp` GPUs as generate_candidates walks them: plain replicas (r, tp = gpus / (pp·r)), then
// DP-attention (dp ≥ 2, tp = gpus / pp).
template <typename Visit>
void for_each_data_parallel_base(int gpus, Visit&& visit) {
  for (const int pp : divisors(gpus)) {
    for (const int replicas : divisors(gpus / pp)) {
      ParallelConfig plain;
      plain.pp_size = pp;
      plain.tp_size = gpus / (pp * replicas);
      plain.dp_size = replicas;
      visit(plain);
    }
    for (const int dp : divisors(gpus / pp)) {
      if (dp == 1) continue;  // DP-attention with dp 1 is the layout without it
      ParallelConfig attention_dp;
      attention_dp.pp_size = pp;
      attention_dp.tp_size = gpus / pp;
      attention_dp.dp_size = dp;
      attention_dp.enable_dp_attention = true;
      visit(attention_dp);
    }
  }
}

// The (ep, moe_dp) choices of a stage of `tp` ranks: every ep | tp and moe_dp | tp / ep for MoE models, else (1, 1).
std::vector<std::pair<int, int>> moe_size_choices(bool moe, int tp) {
  if (!moe) return {{1, 1}};
  std::vector<std::pair<int, int>> out;
  for (const int ep : divisors(tp)) {
    for (const int moe_dp : divisors(tp / ep)) out.emplace_back(ep, moe_dp);
  }
  return out;
}

bool cp_choice_matters(const PlanRequest& request, const ParallelConfig& config) {
  return config.attn_cp_size > 1 && request.workload.phase == Phase::kPrefill;
}

// The CP algorithm and split choices of `config`: all six where they matter, else SGLang's all-gather round-robin.
std::vector<std::pair<CpAlgorithm, CpSplit>> cp_mode_choices(const PlanRequest& request, const ParallelConfig& config) {
  if (!cp_choice_matters(request, config)) return {{CpAlgorithm::kAllGather, CpSplit::kRoundRobin}};
  std::vector<std::pair<CpAlgorithm, CpSplit>> out;
  for (const auto algo : {CpAlgorithm::kAllGather, CpAlgorithm::kRing, CpAlgorithm::kUlysses}) {
    for (const auto split : {CpSplit::kRoundRobin, CpSplit::kZigzag}) out.emplace_back(algo, split);
  }
  return out;
}

// Every (data-parallel base, attn_cp) choice of `gpus` GPUs with the choices that multiply under it, in the order
// generate_candidates expands them and candidate_count counts them: visit(config, moe_sizes, cp_modes, moe_modes).
template <typename Visit>
void for_each_cp_choice(const PlanRequest& request, int gpus, Visit&& visit) {
  const bool moe = request.model.moe.has_value();
  const std::vector<MoeMode> moe_modes =
      moe ? std::vector{MoeMode::kAllToAll, MoeMode::kGather} : std::vector{MoeMode::kGather};
  for_each_data_parallel_base(gpus, [&](const ParallelConfig& base) {
    const auto moe_sizes = moe_size_choices(moe, base.tp_size);
    for (const int cp : divisors(base.tp_size / base.attn_dp_size())) {
      ParallelConfig with_cp = base;
      with_cp.attn_cp_size = cp;
      visit(with_cp, moe_sizes, cp_mode_choices(request, with_cp), moe_modes);
    }
  });
}

// The rules of the planner itself (structural): a layout it would count twice, or does not simulate faithfully, or a
// workload that does not split over it. Empty when none applies.
std::string planner_rule_violation(const PlanRequest& request, const Candidate& c) {
  const ParallelConfig& config = c.config;
  const int gpn = request.cluster.gpus_per_node;
  if (c.gpus != c.nodes * gpn || c.gpus != config.world() * config.replicas()) {
    return fmt::format("{} uses {} GPUs, not the {} of {} node(s): the planner sizes layouts to whole node counts",
                       config.to_flags(), config.world() * config.replicas(), c.nodes * gpn, c.nodes);
  }
  if (config.enable_dp_attention && config.dp_size == 1) {
    return "--enable-dp-attention with --dp-size 1 is the layout without it (SGLang turns DP-attention off)";
  }
  if (!request.model.moe && (config.ep_size != 1 || config.moe_dp_size != 1 || c.moe_mode != MoeMode::kGather)) {
    return fmt::format("{} has no experts: --ep-size, --moe-dp-size and the MoE mode do not apply", request.model.name);
  }
  if (!cp_choice_matters(request, config) &&
      (c.cp_algorithm != CpAlgorithm::kAllGather || c.cp_split != CpSplit::kRoundRobin)) {
    return "the CP algorithm and split only matter with --attn-cp-size > 1 in prefill";
  }
  const int replicas = config.replicas();
  if (replicas > 1) {
    const int world = config.world();
    if (world % gpn != 0 && gpn % world != 0) {
      return fmt::format(
          "--dp-size {} replicas of a {}-rank world straddle {}-GPU nodes unevenly: replicas would not be "
          "identical, and the planner simulates one replica for all",
          replicas, world, gpn);
    }
    if (request.workload.batch % replicas != 0) {
      return fmt::format("--batch {} does not split over --dp-size {} replicas (without --enable-dp-attention)",
                         request.workload.batch, replicas);
    }
  }
  return {};
}

// SGLang's model-specific ServerArgs rules for DeepSeek-V3.2's NSA prefill CP (sglang-parallel-state.md §1.4,
// _handle_model_specific_adjustments): what --enable-nsa-prefill-context-parallel asserts or forces. A layout SGLang
// would silently change (forced sizes) is refused too: it is not the layout that would run. Empty when none applies.
std::string nsa_cp_rule_violation(const PlanRequest& request, const Candidate& c) {
  const ParallelConfig& config = c.config;
  if (!request.model.indexer || config.attn_cp_size == 1) return {};
  const auto version = request.sglang_version;
  if (version == SglangVersion::kPr17213Merge && config.tp_size != 8) {
    return fmt::format("NSA prefill CP asserts --tp-size 8 (one node) at the PR #17213 merge, got --tp-size {}",
                       config.tp_size);
  }
  if (version == SglangVersion::kPr19548 && config.attn_cp_size != config.tp_size) {
    return fmt::format("NSA prefill CP sets --attn-cp-size to --tp-size {} after PR #19548, not {}", config.tp_size,
                       config.attn_cp_size);
  }
  if (version == SglangVersion::kPr22003 && config.attn_cp_size * config.dp_size != config.tp_size) {
    return fmt::format("NSA prefill CP sets --attn-cp-size to --tp-size {} / --dp-size {} after PR #21192, not {}",
                       config.tp_size, config.dp_size, config.attn_cp_size);
  }
  if (c.cp_split == CpSplit::kRoundRobin && config.dp_size != 1) {
    return fmt::format("NSA round-robin-split CP asserts --dp-size 1, got --dp-size {}", config.dp_size);
  }
  if (c.cp_split == CpSplit::kZigzag) {
    if (config.ep_size != config.tp_size || c.moe_mode != MoeMode::kAllToAll) {
      return fmt::format(
          "NSA in-seq-split CP forces --ep-size = --tp-size {} with the DeepEP all-to-all, got "
          "--ep-size {} ({})",
          config.tp_size, config.ep_size, to_string(c.moe_mode));
    }
    if (request.kv_dtype != DType::kBf16) return "NSA in-seq-split CP forces --kv-cache-dtype bf16";
  }
  return {};
}

MemorySummary summarize_memory(const std::vector<MemoryEstimate>& stages) {
  MemorySummary s;
  bool first = true;
  for (const auto& m : stages) {
    const double headroom = std::min(m.static_budget_bytes - m.weights_bytes - m.kv_cache_bytes,
                                     m.dynamic_budget_bytes - m.activation_peak_bytes);
    s.peak_bytes = std::max(s.peak_bytes, m.total_bytes);
    s.capacity_bytes = m.capacity_bytes;
    s.headroom_bytes = first ? headroom : std::min(s.headroom_bytes, headroom);
    first = false;
  }
  return s;
}

}  // namespace

ScheduleOptions Candidate::schedule_options(const PlanRequest& request) const {
  ScheduleOptions o = request.workload;
  o.batch = request.workload.batch / config.replicas();
  o.cp_algorithm = cp_algorithm;
  o.cp_split = cp_split;
  o.moe_mode = moe_mode;
  return o;
}

std::string Candidate::sglang_flags(const ModelSpec& model) const {
  std::string flags = config.to_flags();
  if (config.attn_cp_size > 1 && cp_algorithm == CpAlgorithm::kAllGather) {
    const bool round_robin = cp_split == CpSplit::kRoundRobin;
    flags += model.indexer ? fmt::format(" --enable-nsa-prefill-context-parallel --nsa-prefill-cp-mode {}",
                                         round_robin ? "round-robin-split" : "in-seq-split")
                           : fmt::format(" --enable-prefill-context-parallel --prefill-cp-mode {}",
                                         round_robin ? "round-robin-split" : "in-seq-split");
  }
  if (moe_mode == MoeMode::kAllToAll) flags += " --moe-a2a-backend deepep";
  return flags;
}

std::string Candidate::paratwin_only_flags() const {
  if (config.attn_cp_size == 1 || cp_algorithm == CpAlgorithm::kAllGather) return {};
  return fmt::format("--cp-algo {} --cp-split {}", to_string(cp_algorithm), to_string(cp_split));
}

std::string Candidate::id(const ModelSpec& model) const {
  const std::string extra = paratwin_only_flags();
  return fmt::format("n{} {}{}{}", nodes, sglang_flags(model), extra.empty() ? "" : " ", extra);
}

std::string_view to_string(RejectCategory category) {
  switch (category) {
    case RejectCategory::kStructural:
      return "structural";
    case RejectCategory::kSglangRule:
      return "sglang";
    case RejectCategory::kMemory:
      return "memory";
  }
  return "?";
}

std::int64_t RejectionCounts::total() const {
  std::int64_t n = 0;
  for (const auto& [category, k] : count) n += k;
  return n;
}

Classification classify(const PlanRequest& request, const Candidate& c) {
  Classification out;
  const auto reject = [&](RejectCategory category, std::string reason) {
    out.rejection = Rejection{category, std::move(reason)};
    return out;
  };
  const auto structural = structural_errors(c.config);
  if (!structural.empty()) return reject(RejectCategory::kStructural, structural.front());
  if (auto rule = planner_rule_violation(request, c); !rule.empty()) {
    return reject(RejectCategory::kStructural, std::move(rule));
  }
  const ScheduleOptions options = c.schedule_options(request);
  if (auto why = schedule_options_violation(request.model, c.config, options); !why.empty()) {
    return reject(RejectCategory::kStructural, std::move(why));
  }
  for (const auto& violation : check_sglang_rules(c.config)) {
    if (rejects(violation, request.sglang_version)) return reject(RejectCategory::kSglangRule, violation.message);
  }
  if (auto rule = nsa_cp_rule_violation(request, c); !rule.empty()) {
    return reject(RejectCategory::kSglangRule, std::move(rule));
  }
  std::vector<MemoryEstimate> stages;
  try {
    const MemoryRequest memory = memory_request_for(options, c.config, c.moe_mode, request.cluster.gpu.memory_bytes,
                                                    request.mem_fraction_static, request.kv_dtype);
    stages = estimate_memory_per_stage(request.model, c.config, memory);
  } catch (const Error& e) {
    return reject(RejectCategory::kStructural, e.what());
  }
  out.memory = summarize_memory(stages);
  for (const auto& m : stages) {
    if (!m.fits) return reject(RejectCategory::kMemory, m.verdict);
  }
  return out;
}

std::vector<Candidate> generate_candidates(const PlanRequest& request, int nodes) {
  std::vector<Candidate> out;
  const int gpus = nodes * request.cluster.gpus_per_node;
  for_each_cp_choice(request, gpus, [&](const ParallelConfig& with_cp, const auto& moe_sizes, const auto& cp_modes,
                                        const auto& moe_modes) {
    for (const auto& [ep, moe_dp] : moe_sizes) {
      ParallelConfig config = with_cp;
      config.ep_size = ep;
      config.moe_dp_size = moe_dp;
      for (const auto& [algo, split] : cp_modes) {
        for (const auto mode : moe_modes) out.push_back(Candidate{config, algo, split, mode, nodes, gpus});
      }
    }
  });
  return out;
}

std::int64_t candidate_count(const PlanRequest& request, int nodes) {
  std::int64_t count = 0;
  for_each_cp_choice(request, nodes * request.cluster.gpus_per_node,
                     [&](const ParallelConfig&, const auto& moe_sizes, const auto& cp_modes, const auto& moe_modes) {
                       count += static_cast<std::int64_t>(moe_sizes.size() * cp_modes.size() * moe_modes.size());
                     });
  return count;
}

void check_enumeration_size(const PlanRequest& request) {
  // Node counts ascend and the flag sets grow with them: stop counting at the first count over the limit, so that
  // the check itself stays short for any request.
  std::int64_t total = 0;
  for (const int nodes : request.node_counts) {
    total += candidate_count(request, nodes);
    if (total <= kMaxFlagSets) continue;
    const bool one_count = request.node_counts.size() == 1;
    const int largest = request.node_counts.back();
    fail(
        "plan: {} means looking at more than {} flag sets (layouts before SGLang's and paratwin's rules; {} {} "
        "node(s) alone: {}), the planner's limit (about a minute of enumeration): plan fewer nodes with a smaller {}",
        one_count ? fmt::format("--nodes {}", largest) : fmt::format("--max-nodes {}", largest), kMaxFlagSets,
        one_count ? "its" : "up to", nodes, total, one_count ? "--nodes" : "--max-nodes, or one --nodes N");
  }
}

LayoutSpace enumerate_layouts(const PlanRequest& request, const std::function<bool()>& interrupted) {
  check_enumeration_size(request);
  LayoutSpace space;
  for (const int nodes : request.node_counts) {
    PlanRequest sized = request;
    sized.cluster.nodes = nodes;
    for (auto& candidate : generate_candidates(sized, nodes)) {
      if (interrupted && space.generated % kCandidatesPerInterruptPoll == 0 && interrupted()) {
        space.interrupted = true;
        return space;
      }
      ++space.generated;
      auto verdict = classify(sized, candidate);
      if (verdict.rejection) {
        const auto category = verdict.rejection->category;
        ++space.rejected.count[category];
        auto& examples = space.rejected.examples[category];
        if (examples.size() < kExamplesPerCategory) {
          examples.push_back(fmt::format("{}: {}", candidate.id(request.model), verdict.rejection->reason));
        }
        continue;
      }
      space.kept.push_back(KeptCandidate{std::move(candidate), verdict.memory});
    }
  }
  return space;
}

}  // namespace paratwin::plan
