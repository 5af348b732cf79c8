// `paratwin bench`: the microbenchmark sweep of models/bench_schedule.hpp, measured on the local GPUs (CUDA/NCCL
// backend) or predicted by the simulator (--simulate), written as one trace in the project's schema. The two traces
// of the same sweep have the same schedule hash, so `paratwin compare` matches them op by op and `paratwin calibrate`
// fits the simulator to the measured one.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <map>
#include <memory>

#include "cli/bench_phases.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/commands.hpp"
#include "models/bench_schedule.hpp"
#include "models/model_spec.hpp"
#include "models/schedule_checks.hpp"
#include "models/schedule_json.hpp"
#include "topology/error.hpp"
#include "topology/placement.hpp"
#include "traces/collective_bandwidth.hpp"
#include "traces/trace.hpp"
#ifdef PARATWIN_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif
#ifdef PARATWIN_HAVE_SIM
#include "sim/sim_backend.hpp"
#endif

namespace paratwin::cli {
namespace {

struct BenchCommandOptions {
  BenchScheduleOptions sweep;
  bool no_collectives = false, no_compute = false;
  ClusterFlags cluster;
  std::string out;
  bool simulate = false;
  std::string calibration;
  int warmup = 2;
  int steps = 7;
  double timeout_s = 600;
};

std::string size_text(double bytes) {
  if (bytes >= 1 << 30) return fmt::format("{:g} GiB", bytes / (1 << 30));
  if (bytes >= 1 << 20) return fmt::format("{:g} MiB", bytes / (1 << 20));
  return fmt::format("{:g} KiB", bytes / (1 << 10));
}

// Rank 0's collectives like nccl-tests prints them, then each compute kind's best rate.
std::string report(const Trace& trace) {
  std::string t = fmt::format("  {:<32} {:>10} {:>12} {:>12} {:>12}\n", "collective (group)", "size", "time us",
                              "algbw GB/s", "busbw GB/s");
  std::map<std::string, std::pair<double, std::string>> best_compute;  // kind -> (rate, text)
  for (const auto& e : trace.events) {
    if (e.rank != 0 && e.kind != "recv") continue;
    const double dur_s = e.end_s - e.start_s;
    if (dur_s <= 0) continue;
    if (e.stream == "comm") {
      const auto bw = nccl_tests_bandwidth(e, dur_s);
      t += fmt::format("  {:<32} {:>10} {:>12.1f} {:>12.2f} {:>12.2f}\n",
                       fmt::format("{} ({})", e.kind, e.group.empty() ? "pair" : e.group),
                       size_text(nccl_tests_size_bytes(e)), dur_s * 1e6, bw.algbw_bytes_per_s / 1e9,
                       bw.busbw_bytes_per_s / 1e9);
      continue;
    }
    const bool flops_bound =
        e.flops > 0 && (e.kind == "gemm" || e.kind == "grouped_gemm" || e.kind.find("attention") != std::string::npos ||
                        e.kind == "indexer_score");
    const double rate = flops_bound ? e.flops / dur_s / 1e12 : static_cast<double>(e.bytes) / dur_s / 1e9;
    // fp8 kernels run against another peak: a row of their own.
    auto& best = best_compute[e.dtype == "fp8" ? e.kind + " (fp8)" : e.kind];
    if (rate > best.first) {
      best = {rate,
              fmt::format("{:.1f} {} ({}, {:.1f} us)", rate, flops_bound ? "TFLOP/s" : "GB/s", e.name, dur_s * 1e6)};
    }
  }
  t += "\n  best rate per compute kind (rank 0)\n";
  for (const auto& [kind, best] : best_compute) t += fmt::format("  {:<22} {}\n", kind, best.second);
  return t;
}

int run_bench(BenchCommandOptions& o, Io io) {
  check_output_path("--out", o.out);
  auto& sweep = o.sweep;
  sweep.collectives = !o.no_collectives;
  sweep.compute = !o.no_compute;
  if (!sweep.collectives && !sweep.compute) fail("--no-collectives and --no-compute leave nothing to measure");
  if (o.out.empty()) fail("--out is required: the trace is the bench's only output");
  if (o.steps < 1 || o.warmup < 0)
    fail("--steps {} / --warmup {}: need ≥ 1 measured and ≥ 0 warm-up steps", o.steps, o.warmup);
  const auto schedule = build_bench_schedule(sweep);
  if (const auto violations = schedule_violations(schedule); !violations.empty()) {
    throw InternalError("paratwin built an inconsistent bench schedule: " + violations.front());
  }
  const auto cluster = load_cluster_for(o.cluster, sweep.gpus);
  const RankLayout layout(schedule.meta.config);
  const Placement placement(layout, cluster);
  std::size_t ops = 0;
  for (const auto& r : schedule.ranks) ops += r.size();
  Trace trace;
  std::string head;
  if (o.simulate) {
#ifdef PARATWIN_HAVE_SIM
    SimOptions sim;
    sim.calibration_file = o.calibration;
    sim.schedule_hash = schedule_hash(schedule);
    trace = simulate(schedule, placement, sim).trace;
    head = fmt::format("paratwin bench --simulate: {} ops on {} simulated GPU(s) of {}{}\n", ops, sweep.gpus,
                       cluster.name, o.calibration.empty() ? "" : " calibrated by " + o.calibration);
#else
    fail("paratwin was built without SimGrid: `paratwin bench --simulate` needs the simulator");
#endif
  } else {
#ifdef PARATWIN_HAVE_CUDA
    if (!o.calibration.empty()) fail("--calibration applies to --simulate only");
    CudaOptions cuda;
    cuda.warmup_steps = o.warmup;
    cuda.measured_steps = o.steps;
    cuda.timeout_s = o.timeout_s;
    cuda.per_op_median = true;
    cuda.model = load_model("deepseek-v3.2");  // the router kernel's scoring (sigmoid) comes from a model
    const auto phase = [&](bool collectives) {
      auto only = sweep;
      only.collectives = collectives;
      only.compute = !collectives;
      return run_cuda(build_bench_schedule(only), placement, cuda).trace;
    };
    // The collectives and the compute kernels in phases of their own steps (cli/bench_phases.hpp says why).
    const bool phases = sweep.collectives && sweep.compute && sweep.gpus > 1;
    trace = phases ? join_bench_phases(schedule, phase(true), phase(false))
                   : run_cuda(schedule, placement, cuda).trace;
    head = fmt::format("paratwin bench: {} ops on {} GPU(s), per-op medians of {} steps after {} warm-up{}; {}\n",
                       ops, sweep.gpus, o.steps, o.warmup,
                       phases ? " (collectives, then compute kernels, each their own steps)" : "", cuda_versions());
#else
    fail(
        "paratwin was built without CUDA: `paratwin bench` measures on GPUs (configure with "
        "-DPARATWIN_ENABLE_CUDA=ON), or predicts with --simulate");
#endif
  }
  trace.meta.model = "bench";
  trace.meta.cluster = fmt::format("{} ({} × {})", cluster.name, cluster.nodes, cluster.gpus_per_node);
  trace.meta.extra["bench_gpus"] = std::to_string(sweep.gpus);
  trace.meta.extra["bench_bytes"] = fmt::format("{}..{}", sweep.min_bytes, sweep.max_bytes);
  write_chrome_trace_file(trace, o.out);
  io.out << head << report(trace) << fmt::format("wrote {} ({} events)\n", o.out, trace.events.size());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<BenchCommandOptions>();
  auto* cmd = root.add_subcommand(
      "bench",
      "Measure every collective (4 KiB–1 GiB, every group shape of the GPUs) and every compute kernel kind over a "
      "sweep of shapes on the local GPUs, or predict the same sweep with the simulator (--simulate); writes one "
      "trace for `paratwin calibrate` and `paratwin compare`");
  auto& s = options->sweep;
  cmd->add_option("--gpus", s.gpus, "GPUs (ranks): 1, 2 or a multiple of 4")->capture_default_str();
  cmd->add_option("--min-bytes", s.min_bytes, "Smallest collective size (nccl-tests' size)")->capture_default_str();
  cmd->add_option("--max-bytes", s.max_bytes, "Largest collective size; sizes double")->capture_default_str();
  cmd->add_flag("--no-collectives", options->no_collectives, "Only the compute kernels");
  cmd->add_flag("--no-compute", options->no_compute, "Only the collectives");
  cmd->add_option("--out", options->out, "The trace to write (Chrome trace JSON, the project's schema)")->required();
  cmd->add_flag("--simulate", options->simulate, "Predict with the simulator instead of measuring on GPUs");
  cmd->add_option("--calibration", options->calibration, "With --simulate: calibration YAML (paratwin calibrate)");
  add_cluster_flags(*cmd, options->cluster);
  cmd->add_option("--warmup", options->warmup, "Warm-up steps (not measured)")->capture_default_str();
  cmd->add_option("--steps", options->steps, "Measured steps; each op's median is reported")->capture_default_str();
  cmd->add_option("--timeout", options->timeout_s, "Watchdog seconds per step")->capture_default_str();
  cmd->callback([options, &action, io] { action = [options, io] { return run_bench(*options, io); }; });
}

}  // namespace paratwin::cli
