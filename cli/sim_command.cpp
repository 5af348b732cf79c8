// `paratwin sim`: simulate one prefill (or decode step) of a model on a virtual cluster with SimGrid.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cluster_flags.hpp"
#include "cli/commands.hpp"
#include "cli/parallel_flags.hpp"
#include "cli/workload_flags.hpp"
#include "models/schedule_builder.hpp"
#include "models/schedule_json.hpp"
#include "sim/sim_backend.hpp"
#include "traces/trace.hpp"

namespace paratwin::cli {
namespace {

struct SimCommandOptions {
  ParallelFlags parallel;
  ClusterFlags cluster;
  WorkloadFlags workload;
  SimOptions sim;
  bool pure_alpha_beta = false;
  std::string trace;
  bool json = false;
};

constexpr std::size_t kLayersShown = 6;

std::string ms(double s) {
  return fmt::format("{:.3f}", s * 1e3);
}

nlohmann::json summary_json(const SimSummary& s, const std::vector<MemoryEstimate>& memory) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : s.layers) {
    layers.push_back({{"layer", l.layer},
                      {"start_s", l.start_s},
                      {"end_s", l.end_s},
                      {"compute_s", l.compute_s},
                      {"comm_s", l.comm_s},
                      {"exposed_comm_s", l.exposed_comm_s}});
  }
  nlohmann::json kinds = nlohmann::json::array();
  for (const auto& k : s.kinds) {
    kinds.push_back({{"kind", k.kind},
                     {"stream", k.stream},
                     {"count", k.count},
                     {"critical_rank_s", k.critical_rank_s},
                     {"mean_rank_s", k.mean_rank_s}});
  }
  nlohmann::json links = nlohmann::json::array();
  for (const auto& l : s.busiest_links) {
    links.push_back({{"name", l.name}, {"class", l.link_class}, {"bytes", l.bytes}, {"utilization", l.utilization}});
  }
  nlohmann::json mem = nlohmann::json::array();
  for (const auto& m : memory) {
    mem.push_back({{"pp_stage", m.pp_stage},
                   {"weights_bytes", m.weights_bytes},
                   {"kv_cache_bytes", m.kv_cache_bytes},
                   {"activation_peak_bytes", m.activation_peak_bytes},
                   {"total_bytes", m.total_bytes},
                   {"capacity_bytes", m.capacity_bytes},
                   {"fits", m.fits},
                   {"verdict", m.verdict}});
  }
  return {{"end_to_end_s", s.end_to_end_s},
          {"critical_rank", s.critical_rank},
          {"critical_exposed_comm_s", s.critical_exposed_comm_s},
          {"compute_utilization", s.compute_utilization},
          {"layers", layers},
          {"kinds", kinds},
          {"busiest_links", links},
          {"algorithms", s.algorithms},
          {"memory", mem},
          {"simgrid_tasks", s.simgrid_tasks},
          {"wall_s", s.wall_s}};
}

std::string summary_text(const SimSummary& s, const Schedule& schedule, const std::vector<MemoryEstimate>& memory,
                         const Cluster& cluster) {
  std::string t;
  const auto& meta = schedule.meta;
  t += fmt::format("paratwin sim: {} {} of {} token(s) × {} request(s), {} layers; {}\n", meta.model,
                   to_string(meta.phase), meta.prompt_tokens, meta.batch, meta.layers, meta.config.to_flags());
  t += fmt::format("cluster {}: {} node(s) × {} {}; CP {} ({}), MoE {}\n\n", cluster.name, cluster.nodes,
                   cluster.gpus_per_node, cluster.gpu.name, to_string(meta.cp_algorithm), to_string(meta.cp_split),
                   to_string(meta.moe_mode));
  t += fmt::format("{}: {} ms   (critical rank {})\n", meta.phase == Phase::kPrefill ? "TTFT" : "step time",
                   ms(s.end_to_end_s), s.critical_rank);
  t += fmt::format("exposed communication on the critical rank: {} ms ({:.1f} %)\n", ms(s.critical_exposed_comm_s),
                   s.end_to_end_s > 0 ? 100 * s.critical_exposed_comm_s / s.end_to_end_s : 0.0);
  t += fmt::format("compute utilization (FLOPs / peak over all GPUs): {:.1f} %\n", 100 * s.compute_utilization);

  t += "\nPer op kind (critical rank; a kind's time may overlap other kinds on the other stream)\n";
  t += fmt::format("  {:<18} {:<8} {:>8} {:>12} {:>8}\n", "kind", "stream", "ops", "time ms", "share");
  auto kinds = s.kinds;
  std::sort(kinds.begin(), kinds.end(),
            [](const auto& a, const auto& b) { return a.critical_rank_s > b.critical_rank_s; });
  for (const auto& k : kinds) {
    t += fmt::format("  {:<18} {:<8} {:>8} {:>12} {:>7.1f}%\n", k.kind, k.stream, k.count, ms(k.critical_rank_s),
                     s.end_to_end_s > 0 ? 100 * k.critical_rank_s / s.end_to_end_s : 0.0);
  }

  t += "\nPer layer (critical rank)\n";
  t += fmt::format("  {:>5} {:>10} {:>10} {:>10} {:>12}\n", "layer", "span ms", "compute", "comm", "exposed comm");
  for (std::size_t i = 0; i < s.layers.size(); ++i) {
    if (i == kLayersShown && s.layers.size() > kLayersShown + 1) {
      t += fmt::format("  … {} more layers (--json lists all)\n", s.layers.size() - kLayersShown - 1);
      i = s.layers.size() - 1;
    }
    const auto& l = s.layers[i];
    t += fmt::format("  {:>5} {:>10} {:>10} {:>10} {:>12}\n", l.layer, ms(l.end_s - l.start_s), ms(l.compute_s),
                     ms(l.comm_s), ms(l.exposed_comm_s));
  }

  t += "\nBusiest links\n";
  for (const auto& l : s.busiest_links) {
    t += fmt::format("  {:<20} {:<7} {:>10.2f} GB  {:>5.1f} % busy\n", l.name, l.link_class, l.bytes / 1e9,
                     100 * l.utilization);
  }
  if (!s.algorithms.empty()) {
    t += "\nNCCL algorithm/protocol chosen (collective instances)\n";
    for (const auto& [what, count] : s.algorithms) t += fmt::format("  {:<40} {}\n", what, count);
  }
  t += "\nMemory per rank (model)\n";
  for (const auto& m : memory) t += fmt::format("  {}\n", m.verdict);
  t += fmt::format("\nsimulated {} SimGrid tasks in {:.2f} s\n", s.simgrid_tasks, s.wall_s);
  return t;
}

int run_sim(SimCommandOptions& o, Io io) {
  check_output_path("--trace", o.trace);
  const auto checked = check_parallel_flags(o.parallel);
  const auto& config = checked.config;
  const auto model = load_workload_model(o.workload);
  const auto options = schedule_options(o.workload);
  const auto cluster = load_cluster_for(o.cluster, config.world() * config.replicas());
  const RankLayout layout(config);
  const Placement placement(layout, cluster);
  const auto moe_mode = resolve_moe_mode(config, options);
  // The schedule first: building it checks the workload flags (--prompt-len, --batch, ...) and names them.
  const auto schedule = build_schedule(model, config, options);
  const auto memory =
      estimate_memory_per_stage(model, config, memory_request(o.workload, config, moe_mode, cluster.gpu.memory_bytes));
  o.sim.nccl_model = !o.pure_alpha_beta;
  const auto hash = schedule_hash(schedule);
  o.sim.schedule_hash = hash;
  auto result = simulate(schedule, placement, o.sim);
  if (!o.trace.empty()) {
    result.trace.meta.model = model.name;
    result.trace.meta.layout = config.to_flags();
    result.trace.meta.cluster = fmt::format("{} {}x{}", cluster.name, cluster.nodes, cluster.gpus_per_node);
    write_chrome_trace_file(result.trace, o.trace);
  }
  if (o.json) {
    auto doc = summary_json(result.summary, memory);
    doc["schedule_hash"] = hash;
    doc["flags"] = config.to_flags();
    doc["warnings"] = checked.warnings;
    io.out << doc.dump(2) << "\n";
  } else {
    io.out << summary_text(result.summary, schedule, memory, cluster);
    for (const auto& w : checked.warnings) io.out << "warning: " << w << "\n";
    if (!o.trace.empty()) io.out << "wrote trace " << o.trace << " (open it in Perfetto)\n";
  }
  return 0;
}

}  // namespace

void add_sim_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<SimCommandOptions>();
  auto* cmd = root.add_subcommand(
      "sim",
      "Simulate one prefill (TTFT) or decode step on a virtual cluster with SimGrid: NCCL-aligned collectives, "
      "roofline compute, overlap of the compute and comm streams; prints where the time goes");
  add_parallel_flags(*cmd, options->parallel);
  add_workload_flags(*cmd, options->workload);
  add_cluster_flags(*cmd, options->cluster);
  auto& sim = options->sim;
  cmd->add_option("--calibration", sim.calibration_file, "Calibration YAML (docs/sim.md); default: datasheet numbers")
      ->group("Simulation");
  cmd->add_flag("--fast", sim.fast, "Simulate each distinct layer once and reuse it (for sweeps)")->group("Simulation");
  cmd->add_flag("--alpha-beta", options->pure_alpha_beta,
                "Pure latency + bytes/bandwidth collectives (ring, no NCCL protocol model)")
      ->group("Simulation");
  cmd->add_option("--nccl-algo", sim.algorithms, "Restrict NCCL algorithms, like NCCL_ALGO (e.g. ring,tree)")
      ->group("Simulation");
  cmd->add_option("--nccl-proto", sim.protocols, "Restrict NCCL protocols, like NCCL_PROTO (e.g. simple)")
      ->group("Simulation");
  cmd->add_flag("--nvls", sim.enable_nvls, "Allow NVLS where the cluster has it (off on the test machines)")
      ->group("Simulation");
  cmd->add_option("--trace", options->trace, "Write the simulated trace (Chrome trace JSON, for Perfetto)")
      ->group("Output");
  cmd->add_flag("--json", options->json, "Print the summary as one JSON object")->group("Output");
  cmd->callback([options, &action, io] { action = [options, io] { return run_sim(*options, io); }; });
}

}  // namespace paratwin::cli
