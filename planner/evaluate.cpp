#include "planner/evaluate.hpp"

#include <fmt/format.h>

#include <chrono>

#include "models/schedule_builder.hpp"
#include "planner/lower_bound.hpp"
#include "sim/sim_backend.hpp"
#include "topology/error.hpp"

namespace paratwin::plan {
namespace {

// One world of the candidate: plain-DP replicas are identical worlds, so the schedule and the simulation are those of
// one replica (dp_size 1); DP-attention stays, it splits the world itself.
ParallelConfig one_world(const Candidate& candidate) {
  ParallelConfig config = candidate.config;
  if (!config.enable_dp_attention) config.dp_size = 1;
  return config;
}

bool is_attention_kind(std::string_view kind) {
  return kind == to_string(ComputeKind::kAttention) || kind == to_string(ComputeKind::kSparseAttention) ||
         kind == to_string(ComputeKind::kIndexerScore);
}

}  // namespace

std::string simulation_key(const PlanRequest& request, const Candidate& candidate) {
  const ParallelConfig world = one_world(candidate);
  const int gpn = request.cluster.gpus_per_node;
  return fmt::format("{} | cp {} {} | moe {} | batch {} | world {} on {}-GPU nodes", world.to_flags(),
                     to_string(candidate.cp_algorithm), to_string(candidate.cp_split), to_string(candidate.moe_mode),
                     candidate.schedule_options(request).batch, world.world(), gpn);
}

double step_tokens(const PlanRequest& request) {
  const double batch = request.workload.batch;
  return request.workload.phase == Phase::kPrefill ? batch * static_cast<double>(request.workload.prompt_tokens)
                                                   : batch;
}

double objective_score(const PlanRequest& request, double latency_s, int gpus) {
  if (request.objective == Objective::kTtft) return latency_s;
  return latency_s * gpus / step_tokens(request);
}

std::string_view to_string(OutcomeStatus status) {
  switch (status) {
    case OutcomeStatus::kSimulated:
      return "simulated";
    case OutcomeStatus::kPruned:
      return "pruned";
    case OutcomeStatus::kFailed:
      return "failed";
  }
  return "?";
}

OutcomeStatus parse_outcome_status(std::string_view text) {
  for (const auto status : {OutcomeStatus::kSimulated, OutcomeStatus::kPruned, OutcomeStatus::kFailed}) {
    if (text == to_string(status)) return status;
  }
  fail("unknown layout status '{}': expected simulated, pruned or failed", text);
}

Outcome evaluate(const PlanRequest& request, const Candidate& candidate, const PruneCut& cut, bool isolate_process) {
  const auto start = std::chrono::steady_clock::now();
  const auto finish = [&](Outcome outcome) {
    outcome.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return outcome;
  };
  Outcome out;
  const ParallelConfig world = one_world(candidate);
  try {
    const Schedule schedule = build_schedule(request.model, world, candidate.schedule_options(request));
    SimOptions options;
    options.fast = request.fast;
    options.isolate_process = isolate_process;
    // The trace is discarded; the key identifies the schedule's inputs, which spares hashing the schedule.
    options.schedule_hash = "plan: " + simulation_key(request, candidate);
    out.lower_bound_s = compute_lower_bound_s(world, compute_stream_s(schedule, request.cluster.gpu, options));
    if (request.prune && objective_score(request, out.lower_bound_s, candidate.gpus) >= cut.score &&
        out.lower_bound_s >= cut.latency_s) {
      out.status = OutcomeStatus::kPruned;
      return finish(out);
    }
    Cluster cluster = request.cluster;
    cluster.nodes = (world.world() + cluster.gpus_per_node - 1) / cluster.gpus_per_node;
    const RankLayout layout(world);
    const Placement placement(layout, cluster);
    const SimResult result = simulate(schedule, placement, options);
    const SimSummary& s = result.summary;
    out.status = OutcomeStatus::kSimulated;
    out.latency_s = s.end_to_end_s;
    out.exposed_comm_s = s.critical_exposed_comm_s;
    out.compute_utilization = s.compute_utilization;
    out.layers_reused = s.layers_reused;
    for (const auto& kind : s.kinds) {
      if (is_attention_kind(kind.kind)) out.attention_s += kind.critical_rank_s;
    }
  } catch (const Error& e) {
    out.status = OutcomeStatus::kFailed;
    out.error = e.what();
  }
  return finish(out);
}

}  // namespace paratwin::plan
