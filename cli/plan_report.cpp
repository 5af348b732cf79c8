#include "cli/plan_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "planner/results_file.hpp"
#include "topology/parallel_config.hpp"

namespace paratwin::cli {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string ms(double s) {
  return fmt::format("{:.2f}", s * 1e3);
}

std::string all_flags(const plan::RankedLayout& l, const ModelSpec& model) {
  const std::string extra = l.candidate.paratwin_only_flags();
  return extra.empty() ? l.candidate.sglang_flags(model)
                       : fmt::format("{}  [paratwin only: {}]", l.candidate.sglang_flags(model), extra);
}

// The CSV field quoted when it holds a comma or a quote (RFC 4180).
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

bool on_front(const plan::Ranking& ranking, std::size_t index) {
  return std::find(ranking.pareto.begin(), ranking.pareto.end(), index) != ranking.pareto.end();
}

nlohmann::json layout_json(const plan::RankedLayout& l, const ModelSpec& model, std::size_t rank) {
  nlohmann::json j = {{"rank", rank},
                      {"id", l.id},
                      {"sglang_flags", l.candidate.sglang_flags(model)},
                      {"paratwin_only_flags", l.candidate.paratwin_only_flags()},
                      {"nodes", l.candidate.nodes},
                      {"gpus", l.candidate.gpus},
                      {"cp_algo", to_string(l.candidate.cp_algorithm)},
                      {"cp_split", to_string(l.candidate.cp_split)},
                      {"moe_mode", to_string(l.candidate.moe_mode)},
                      {"latency_s", l.outcome.latency_s},
                      {"tokens_per_s_per_gpu", l.tokens_per_s_per_gpu},
                      {"score", l.score},
                      {"lower_bound_s", l.outcome.lower_bound_s},
                      {"exposed_comm_s", l.outcome.exposed_comm_s},
                      {"attention_s", l.outcome.attention_s},
                      {"compute_utilization", l.outcome.compute_utilization},
                      {"memory_peak_bytes", l.memory.peak_bytes},
                      {"memory_headroom_bytes", l.memory.headroom_bytes},
                      {"memory_capacity_bytes", l.memory.capacity_bytes}};
  for_each_layout_argument(l.candidate.config, [&](const char* key, const auto& value) { j[key] = value; });
  return j;
}

}  // namespace

std::string plan_report_text(const PlanReportContext& ctx) {
  const auto& request = ctx.request;
  const auto& result = ctx.result;
  const auto& w = request.workload;
  const bool prefill = w.phase == Phase::kPrefill;
  std::string t;
  const int first_nodes = request.node_counts.front();
  const int last_nodes = request.node_counts.back();
  t += fmt::format(
      "paratwin plan: {} {} of {} token(s) × {} request(s){}; cluster {}: {} node(s) of {} {}\n", request.model.name,
      to_string(w.phase), w.prompt_tokens, w.batch,
      w.layers > 0 ? fmt::format(", first {} layers", w.layers) : std::string(), request.cluster.name,
      first_nodes == last_nodes ? fmt::format("{}", first_nodes) : fmt::format("{} to {}", first_nodes, last_nodes),
      request.cluster.gpus_per_node, request.cluster.gpu.name);
  t += fmt::format("objective: {}; SGLang rules of {}\n\n", to_string(request.objective),
                   describe(request.sglang_version));

  const auto count = [&](plan::RejectCategory c) {
    const auto it = result.rejected.count.find(c);
    return it == result.rejected.count.end() ? std::int64_t{0} : it->second;
  };
  t += fmt::format(
      "layouts: {} flag sets looked at, {} kept; left out: {} structural, {} by an SGLang rule, {} over "
      "GPU memory\n",
      result.generated, result.kept.size(), count(plan::RejectCategory::kStructural),
      count(plan::RejectCategory::kSglangRule), count(plan::RejectCategory::kMemory));
  for (const auto& [category, examples] : result.rejected.examples) {
    for (const auto& e : examples) t += fmt::format("  {} e.g. {}\n", to_string(category), e);
  }
  const auto& c = result.counts;
  t += fmt::format(
      "evaluated {} layouts ({} simulation keys): {} simulated, {} pruned by the compute bound, {} "
      "reused, {} resumed, {} failed; {:.1f} s with {} worker process(es){}\n",
      c.done, result.simulation_keys, c.simulated, c.pruned, c.reused, c.resumed, c.failed, result.wall_s, ctx.jobs,
      ctx.mpi_ranks > 1 ? fmt::format(" on each of {} MPI ranks", ctx.mpi_ranks) : "");
  for (std::size_t i = 0; i < result.kept.size(); ++i) {
    const auto& o = result.outcomes[i];
    if (o && o->status == plan::OutcomeStatus::kFailed) {
      t += fmt::format("  failed e.g. {}: {} (--json lists every failure)\n",
                       result.kept[i].candidate.id(request.model), o->error);
      break;
    }
  }
  t += "\n";
  if (result.interrupted) t += "INTERRUPTED: the ranking covers the layouts finished so far (--resume continues)\n\n";

  const auto& ranking = result.ranking;
  if (ranking.layouts.empty()) {
    t += result.interrupted    ? "no layout finished before the interruption\n"
         : result.kept.empty() ? "no layout was simulated: every flag set was left out (see above)\n"
                               : "no layout was simulated: every kept layout failed (see above)\n";
    return t;
  }
  const char* latency_name = prefill ? "TTFT ms" : "step ms";
  t += fmt::format("{:>4} {:>5} {:>10} {:>10} {:>9} {:>16}  {}\n", "rank", "GPUs", latency_name, "tok/s/GPU",
                   "free GiB", "exposed comm ms", "SGLang flags");
  const auto shown = std::min<std::size_t>(ranking.layouts.size(), static_cast<std::size_t>(request.top));
  for (std::size_t i = 0; i < shown; ++i) {
    const auto& l = ranking.layouts[i];
    const double exposed_pct = l.outcome.latency_s > 0 ? 100 * l.outcome.exposed_comm_s / l.outcome.latency_s : 0;
    t += fmt::format("{:>4} {:>5} {:>10} {:>10.1f} {:>9.1f} {:>9} ({:>4.1f}%)  {}\n", i + 1, l.candidate.gpus,
                     ms(l.outcome.latency_s), l.tokens_per_s_per_gpu, l.memory.headroom_bytes / kGiB,
                     ms(l.outcome.exposed_comm_s), exposed_pct, all_flags(l, request.model));
  }
  if (ranking.layouts.size() > shown) {
    t += fmt::format("… {} more simulated layouts (--top, --json, --csv)\n", ranking.layouts.size() - shown);
  }
  t += fmt::format("\nPareto front, {} against GPUs (fewest GPUs first)\n", prefill ? "TTFT" : "step time");
  t += fmt::format("{:>5} {:>10} {:>10}  {}\n", "GPUs", latency_name, "tok/s/GPU", "SGLang flags");
  for (const std::size_t i : ranking.pareto) {
    const auto& l = ranking.layouts[i];
    t += fmt::format("{:>5} {:>10} {:>10.1f}  {}\n", l.candidate.gpus, ms(l.outcome.latency_s), l.tokens_per_s_per_gpu,
                     all_flags(l, request.model));
  }
  return t;
}

std::string plan_report_json(const PlanReportContext& ctx) {
  const auto& result = ctx.result;
  const auto& model = ctx.request.model;
  nlohmann::json ranking = nlohmann::json::array();
  for (std::size_t i = 0; i < result.ranking.layouts.size(); ++i) {
    ranking.push_back(layout_json(result.ranking.layouts[i], model, i + 1));
  }
  nlohmann::json pareto = nlohmann::json::array();
  for (const std::size_t i : result.ranking.pareto) pareto.push_back(result.ranking.layouts[i].id);
  nlohmann::json rejected = nlohmann::json::object();
  for (const auto& [category, n] : result.rejected.count) {
    rejected[std::string(to_string(category))] = {{"count", n}, {"examples", result.rejected.examples.at(category)}};
  }
  nlohmann::json failed = nlohmann::json::array();
  for (std::size_t i = 0; i < result.kept.size(); ++i) {
    const auto& o = result.outcomes[i];
    if (o && o->status == plan::OutcomeStatus::kFailed) {
      failed.push_back({{"id", result.kept[i].candidate.id(model)}, {"error", o->error}});
    }
  }
  const auto& c = result.counts;
  const nlohmann::json doc = {{"inputs", nlohmann::json::parse(plan::plan_inputs_json(ctx.request))},
                              {"generated", result.generated},
                              {"kept", result.kept.size()},
                              {"rejected", rejected},
                              {"counts",
                               {{"done", c.done},
                                {"simulation_keys", result.simulation_keys},
                                {"simulated", c.simulated},
                                {"pruned", c.pruned},
                                {"reused", c.reused},
                                {"resumed", c.resumed},
                                {"failed", c.failed}}},
                              {"interrupted", result.interrupted},
                              {"ranking", ranking},
                              {"pareto", pareto},
                              {"failed", failed},
                              {"run", {{"wall_s", result.wall_s}, {"jobs", ctx.jobs}, {"mpi_ranks", ctx.mpi_ranks}}}};
  return doc.dump(2) + "\n";
}

std::string plan_report_csv(const PlanReportContext& ctx) {
  const auto& ranking = ctx.result.ranking;
  std::string csv =
      "rank,nodes,gpus,tp_size,pp_size,dp_size,enable_dp_attention,attn_cp_size,ep_size,moe_dp_size,cp_algo,cp_split,"
      "moe_mode,latency_s,tokens_per_s_per_gpu,memory_headroom_bytes,exposed_comm_s,attention_s,lower_bound_s,pareto,"
      "sglang_flags,paratwin_only_flags\n";
  for (std::size_t i = 0; i < ranking.layouts.size(); ++i) {
    const auto& l = ranking.layouts[i];
    const auto& c = l.candidate.config;
    csv += fmt::format(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", i + 1, l.candidate.nodes,
        l.candidate.gpus, c.tp_size, c.pp_size, c.dp_size, c.enable_dp_attention ? 1 : 0, c.attn_cp_size, c.ep_size,
        c.moe_dp_size, to_string(l.candidate.cp_algorithm), to_string(l.candidate.cp_split),
        to_string(l.candidate.moe_mode), l.outcome.latency_s, l.tokens_per_s_per_gpu, l.memory.headroom_bytes,
        l.outcome.exposed_comm_s, l.outcome.attention_s, l.outcome.lower_bound_s, on_front(ranking, i) ? 1 : 0,
        csv_field(l.candidate.sglang_flags(ctx.request.model)), csv_field(l.candidate.paratwin_only_flags()));
  }
  return csv;
}

}  // namespace paratwin::cli
