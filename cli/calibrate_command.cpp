// `paratwin calibrate MEASURED... -o calibration.yaml [--holdout]`: fits the simulator's calibration file
// (docs/sim.md §5) to measured traces (docs/compare.md, "Calibration"). The fit lives in traces/; this command
// supplies what traces/ may not look up itself: the cluster's peaks and line rates, and the compute kinds with their
// keys in the sim's calibration file. The file is the simulator's, so the command exists in builds with the sim.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "models/schedule.hpp"
#include "sim/calibration.hpp"
#include "topology/cluster.hpp"
#include "topology/error.hpp"
#include "traces/calibration_fit.hpp"
#include "traces/trace.hpp"

namespace paratwin::cli {
namespace {

struct CalibrateOptions {
  std::vector<std::string> traces;
  std::string output;
  std::string cluster;  ///< "": the cluster named in the first trace's metadata
  bool holdout = false;
  std::string sim_mode = "nccl";  ///< which communication model of the sim the file is for
  // The sim's default launch overhead (docs/sim.md §4). The fit keeps it fixed and writes it into the file, so the
  // efficiencies it fits are the ones the sim will combine with it.
  double launch_overhead_us = 0.9;
  bool fit_launch_overhead = false;  ///< fit it from the kernels instead (FitInputs::fit_launch_overhead)
};

// The preset name is the first word of TraceMeta::cluster ("h200-sxm 1x2" from sim, "h200-sxm (1 × 2)" from run).
std::string cluster_of(const Trace& trace, const std::string& source) {
  const std::string& text = trace.meta.cluster;
  const std::string name = text.substr(0, text.find(' '));
  if (name.empty()) fail("calibrate: trace {} names no cluster in its metadata: pass --cluster", source);
  return name;
}

int run_calibrate(const CalibrateOptions& o, Io io) {
  if (o.output.empty()) fail("calibrate: -o FILE is required: where to write the calibration YAML");
  check_output_path("--output", o.output);
  if (o.sim_mode != "nccl" && o.sim_mode != "alpha-beta") {
    fail("--sim-mode '{}' is invalid: 'nccl' (the sim's default model) or 'alpha-beta' (paratwin sim --alpha-beta)",
         o.sim_mode);
  }
  const CalibrationTarget target = o.sim_mode == "nccl" ? CalibrationTarget::kNcclModel : CalibrationTarget::kAlphaBeta;
  if (!(o.launch_overhead_us >= 0) || !std::isfinite(o.launch_overhead_us)) {
    fail("--launch-overhead-us {} is invalid: a kernel launch overhead is a finite number ≥ 0", o.launch_overhead_us);
  }
  std::vector<Trace> traces;
  for (const std::string& path : o.traces) {
    traces.push_back(read_chrome_trace_file(path));
    if (traces.back().foreign) fail("calibrate: {} is not a paratwin trace (no op costs to fit to)", path);
  }
  const std::string cluster_name = o.cluster.empty() ? cluster_of(traces.front(), o.traces.front()) : o.cluster;
  const Cluster cluster = load_cluster(cluster_name, 0);

  FitInputs inputs;
  inputs.bf16_flops_per_s = cluster.gpu.bf16_flops;
  inputs.fp8_flops_per_s = cluster.gpu.fp8_flops;
  inputs.hbm_bytes_per_s = cluster.gpu.hbm_bytes_per_s;
  inputs.nvlink_line_rate_bytes_per_s = cluster.scale_up.bandwidth_bytes_per_s;
  inputs.network_line_rate_bytes_per_s = cluster.scale_out.nic_bandwidth_bytes_per_s;
  inputs.launch_overhead_s = o.launch_overhead_us * 1e-6;
  inputs.fit_launch_overhead = o.fit_launch_overhead;
  inputs.holdout = o.holdout;
  for (std::size_t k = 0; k < kComputeKindCount; ++k) {
    const auto kind = static_cast<ComputeKind>(k);
    inputs.compute_kinds.emplace(to_string(kind), calibration_kernel_key(kind));
  }
  const CalibrationFit fit = fit_calibration(traces, inputs);

  const std::vector<std::string> header = {
      fmt::format("paratwin calibrate: fitted to {}", fmt::join(o.traces, ", ")),
      fmt::format("cluster {} (line rates: NVLink {:g} GB/s, NIC {:g} GB/s); {} communication calls, {} kernels",
                  cluster.name, inputs.nvlink_line_rate_bytes_per_s * 1e-9, inputs.network_line_rate_bytes_per_s * 1e-9,
                  fit.communication_calls, fit.compute_kernels),
      fmt::format("for paratwin sim{} --calibration FILE",
                  target == CalibrationTarget::kAlphaBeta ? " --alpha-beta" : "")};
  const std::string yaml = calibration_yaml(fit, header, target);
  write_file_atomically(o.output, yaml);

  io.out << fmt::format("Fitted {} communication calls and {} compute kernels from {} trace(s) on {}\n",
                        fit.communication_calls, fit.compute_kernels, traces.size(), cluster.name);
  for (const LinkFit& l : fit.links) {
    io.out << fmt::format("  links.{}: latency {:.3f} us, bandwidth {:.2f} GB/s ({} calls){}{}\n", l.link_class,
                          l.latency_s * 1e6, l.bandwidth_bytes_per_s * 1e-9, l.calls,
                          l.latency_at_bound ? ", latency held at 0" : "",
                          l.bandwidth_at_bound ? ", bandwidth held at the line rate" : "");
  }
  if (fit.launch_overhead_fitted) {
    io.out << fmt::format("  compute.launch_overhead_us: {:.3f} (the least time a kernel took beyond its work)\n",
                          fit.launch_overhead_s * 1e6);
  }
  for (const CurveFit& c : fit.curves) {
    io.out << fmt::format("  compute.kernels.{}.{}: {} point(s) from {} kernels{}\n", c.key, c.curve, c.points.size(),
                          c.kernels,
                          c.points_at_bound ? fmt::format(", {} held at efficiency 1", c.points_at_bound) : "");
  }
  if (o.holdout) {
    io.out << "Hold-out error (fit on every other size/shape, error on the rest; the accuracy claim):\n";
    if (fit.holdout.empty()) io.out << "  none: no kind had three sizes (the smallest and largest always fit)\n";
    for (const HoldoutError& h : fit.holdout) {
      io.out << fmt::format("  {:<22} n={:<5} median {:+.2f}%  median|e| {:.2f}%  p90|e| {:.2f}%  MAPE {:.2f}%\n",
                            h.kind, h.stats.count, h.stats.median * 100, h.stats.median_abs * 100,
                            h.stats.p90_abs * 100, h.stats.mape * 100);
    }
  }
  for (const std::string& note : fit.notes) io.out << "  not fitted: " << note << "\n";
  io.out << fmt::format("Wrote {}\n", o.output);
  return 0;
}

}  // namespace

void add_calibrate_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = root.add_subcommand(
      "calibrate", "Fit the simulator's calibration file to measured traces (docs/compare.md, Calibration)");
  cmd->add_option("measured", options->traces, "Measured traces (paratwin bench/run --trace)")->required();
  cmd->add_option("-o,--output", options->output, "Calibration YAML to write (for paratwin sim --calibration)")
      ->required();
  cmd->add_flag("--holdout", options->holdout,
                "Also fit on every other size/shape and report the error on the others (the accuracy claim)");
  cmd->add_option("--sim-mode", options->sim_mode,
                  "Communication model the file is for: nccl (the sim's default; bandwidths become NCCL graph "
                  "fractions) or alpha-beta (links' latency and bandwidth, for sim --alpha-beta)")
      ->capture_default_str();
  cmd->add_option("--cluster", options->cluster,
                  "Cluster preset or YAML giving peaks and line rates (default: the cluster in the trace metadata)");
  auto* overhead = cmd->add_option("--launch-overhead-us", options->launch_overhead_us,
                                   "Kernel launch overhead kept fixed by the fit and written to the file")
                       ->capture_default_str();
  cmd->add_flag("--fit-launch-overhead", options->fit_launch_overhead,
                "Fit the launch overhead instead: the least time a measured kernel took beyond its work at the "
                "peak (a one-row kernel of the bench sweep is that fixed cost alone)")
      ->excludes(overhead);
  cmd->callback([options, &action, io] { action = [options, io] { return run_calibrate(*options, io); }; });
}

}  // namespace paratwin::cli
