#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/cluster_flags.hpp"
#include "cli/commands.hpp"
#include "cli/parallel_flags.hpp"
#include "cli/workload_flags.hpp"
#include "models/schedule_builder.hpp"
#include "models/schedule_checks.hpp"
#include "models/schedule_json.hpp"
#include "models/schedule_summary.hpp"
#include "topology/error.hpp"

namespace paratwin::cli {
namespace {

struct ScheduleCommandOptions {
  ParallelFlags parallel;
  ClusterFlags cluster;
  WorkloadFlags workload;
  std::string out;
  bool json = false;
};

constexpr int kMaxRanksShown = 64;

std::string gb(double bytes) {
  return fmt::format("{:.2f}", bytes / 1e9);
}

int run_schedule(const ScheduleCommandOptions& o, Io io) {
  const auto start = std::chrono::steady_clock::now();
  check_output_path("--out", o.out);
  const auto checked = check_parallel_flags(o.parallel);
  const auto& config = checked.config;
  const auto model = load_workload_model(o.workload);
  const auto options = schedule_options(o.workload);
  const auto cluster = load_cluster_for(o.cluster, config.world() * config.replicas());
  const auto moe_mode = resolve_moe_mode(config, options);
  // The schedule first: building it checks the workload flags (--prompt-len, --batch, ...) and names them.
  const auto schedule = build_schedule(model, config, options);
  const auto request = memory_request(o.workload, config, moe_mode, cluster.gpu.memory_bytes);
  const auto memory = estimate_memory_per_stage(model, config, request);
  if (const auto violations = schedule_violations(schedule); !violations.empty()) {
    throw InternalError("paratwin built an inconsistent schedule: " + violations.front());
  }
  const auto summaries = summarize(schedule);
  if (!o.out.empty()) write_file_atomically(o.out, schedule_to_json(schedule));
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const RankLayout layout(config);

  // Which families move bytes at all (columns of the table).
  std::vector<GroupFamily> families;
  for (const auto f : kAllFamilies) {
    for (const auto& s : summaries) {
      if (s.sent_bytes[static_cast<std::size_t>(family_index(f))] > 0) {
        families.push_back(f);
        break;
      }
    }
  }
  if (o.json) {
    nlohmann::json doc;
    doc["model"] = model.name;
    doc["flags"] = config.to_flags();
    doc["phase"] = to_string(options.phase);
    doc["prompt_tokens"] = options.prompt_tokens;
    doc["batch"] = options.batch;
    doc["cp_algorithm"] = to_string(schedule.meta.cp_algorithm);
    doc["cp_split"] = to_string(schedule.meta.cp_split);
    doc["moe_mode"] = to_string(moe_mode);
    doc["layers"] = schedule.meta.layers;
    doc["schedule_hash"] = schedule_hash(schedule);
    doc["warnings"] = checked.warnings;
    nlohmann::json ranks = nlohmann::json::array();
    for (const auto& s : summaries) {
      nlohmann::json sent = nlohmann::json::object();
      for (const auto f : kAllFamilies) {
        const auto b = s.sent_bytes[static_cast<std::size_t>(family_index(f))];
        if (b > 0) sent[std::string(family_key(f))] = b;
      }
      const auto& mem = memory[static_cast<std::size_t>(layout.coords(s.rank).pp_rank)];
      ranks.push_back({{"rank", s.rank},
                       {"ops", s.ops},
                       {"compute_ops", s.compute_ops},
                       {"collectives", s.collectives},
                       {"p2p_ops", s.p2p_ops},
                       {"flops", s.flops},
                       {"hbm_bytes", s.hbm_bytes},
                       {"sent_bytes", sent},
                       {"p2p_sent_bytes", s.p2p_sent_bytes},
                       {"memory",
                        {{"weights_bytes", mem.weights_bytes},
                         {"kv_cache_bytes", mem.kv_cache_bytes},
                         {"activation_peak_bytes", mem.activation_peak_bytes},
                         {"total_bytes", mem.total_bytes},
                         {"capacity_bytes", mem.capacity_bytes},
                         {"fits", mem.fits}}}});
    }
    doc["ranks"] = std::move(ranks);
    io.out << doc.dump(2) << "\n";
    return 0;
  }

  std::string s;
  s += fmt::format("paratwin schedule: {} {} of {} token(s) × {} request(s), {} layers; {}\n", model.name,
                   to_string(options.phase), options.prompt_tokens, options.batch, schedule.meta.layers,
                   config.to_flags());
  s += fmt::format("CP {} ({}), MoE {}; {} ranks, built and checked in {:.3f} s; schedule hash {}\n",
                   to_string(schedule.meta.cp_algorithm), to_string(schedule.meta.cp_split), to_string(moe_mode),
                   layout.world_size(), build_s, schedule_hash(schedule));
  s += "\nPer rank (GB = 1e9 bytes; 'sent' = bytes leaving the rank)\n";
  std::string header = fmt::format("  {:>5} {:>6} {:>10} {:>9}", "rank", "ops", "TFLOP", "HBM GB");
  for (const auto f : families) header += fmt::format(" {:>11}", fmt::format("{} GB", family_key(f)));
  header += fmt::format(" {:>8}\n", "p2p GB");
  s += header;
  for (const auto& r : summaries) {
    if (r.rank >= kMaxRanksShown) break;
    std::string row = fmt::format("  {:>5} {:>6} {:>10.2f} {:>9.1f}", r.rank, r.ops, r.flops / 1e12, r.hbm_bytes / 1e9);
    for (const auto f : families)
      row += fmt::format(" {:>11}", gb(r.sent_bytes[static_cast<std::size_t>(family_index(f))]));
    row += fmt::format(" {:>8}\n", gb(r.p2p_sent_bytes));
    s += row;
  }
  if (layout.world_size() > kMaxRanksShown) {
    s += fmt::format("  … {} more ranks (--json lists all)\n", layout.world_size() - kMaxRanksShown);
  }
  s += fmt::format("\nMemory per rank on {} ({} GB, --mem-fraction-static {})\n", cluster.gpu.name,
                   gb(cluster.gpu.memory_bytes), o.workload.mem_fraction_static);
  s += fmt::format("  {:>5} {:>8} {:>11} {:>8} {:>12} {:>9}  {}\n", "stage", "layers", "weights GB", "KV GB",
                   "activ. GB", "total GB", "verdict");
  bool all_fit = true;
  for (const auto& m : memory) {
    all_fit &= m.fits;
    s += fmt::format("  {:>5} {:>8} {:>11} {:>8} {:>12} {:>9}  {}\n", m.pp_stage,
                     fmt::format("{}-{}", m.layers.first, m.layers.end - 1), gb(m.weights_bytes), gb(m.kv_cache_bytes),
                     gb(m.activation_peak_bytes), gb(m.total_bytes), m.verdict);
  }
  s += all_fit ? "  fits: every rank fits in GPU memory\n" : "  DOES NOT FIT: see the verdicts above\n";
  if (!checked.warnings.empty()) {
    s += "\nWarnings\n";
    for (const auto& w : checked.warnings) s += "  - " + w + "\n";
  }
  if (!o.out.empty()) s += fmt::format("\nwrote {}\n", o.out);
  io.out << s;
  return 0;
}

}  // namespace

void add_schedule_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<ScheduleCommandOptions>();
  auto* cmd = root.add_subcommand(
      "schedule",
      "Build the per-rank schedule (compute kernels and communications) of one prefill or decode step, check it, and "
      "print per rank: op counts, FLOPs, HBM bytes, bytes moved per group family, and memory with the fit verdict");
  add_parallel_flags(*cmd, options->parallel);
  add_workload_flags(*cmd, options->workload);
  add_cluster_flags(*cmd, options->cluster);
  cmd->add_option("--out", options->out, "Write the schedule as JSON to this file")->group("Output");
  cmd->add_flag("--json", options->json, "Print the summary as one JSON object")->group("Output");
  cmd->callback([options, &action, io] { action = [options, io] { return run_schedule(*options, io); }; });
}

}  // namespace paratwin::cli
