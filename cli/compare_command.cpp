// `paratwin compare PREDICTED MEASURED`: where a simulated and a measured trace of one schedule disagree
// (docs/compare.md). Needs no backend, so it exists in every build.
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/compare_plots.hpp"
#include "topology/error.hpp"
#include "traces/compare.hpp"
#include "traces/compare_report.hpp"
#include "traces/trace.hpp"

namespace paratwin::cli {
namespace {

struct CompareOptions {
  std::string predicted, measured;
  std::string csv, json, plots;
  int rank = -1;          ///< --rank; −1: the measured critical rank
  double tolerance = -1;  ///< --tolerance; < 0: not given
  bool tolerance_given = false;
};

int run_compare(const CompareOptions& o, Io io) {
  check_output_path("--csv", o.csv);
  check_output_path("--json", o.json);
  if (o.tolerance_given && !(o.tolerance >= 0 && std::isfinite(o.tolerance))) {
    fail("--tolerance {} is invalid: it is a relative error, a finite number ≥ 0 (0.05 = 5 %)", o.tolerance);
  }
  if (o.rank < -1) fail("--rank {} is invalid: ranks are ≥ 0", o.rank);
  // Everything that can be checked before the work is checked first, so a late failure cannot leave half an output.
  std::string python;
  if (!o.plots.empty()) {
    python = find_matplotlib_python();
    prepare_plot_dir(o.plots);
  }
  const Trace predicted = read_chrome_trace_file(o.predicted);
  const Trace measured = read_chrome_trace_file(o.measured);
  const Comparison comparison = compare_traces(predicted, measured, o.predicted, o.measured);
  const int rank = o.rank >= 0 ? o.rank : comparison.measured_critical_rank;
  if (!o.plots.empty()) {
    std::set<int> ranks;
    for (const Event& e : measured.events) ranks.insert(e.rank);
    if (!ranks.count(rank)) {
      fail("--rank {}: the traces have no rank {} (ranks {} to {})", rank, rank, *ranks.begin(), *ranks.rbegin());
    }
  }

  io.out << comparison_text(comparison);
  if (!o.plots.empty()) {
    write_comparison_plots(python, predicted, measured, comparison, rank, o.plots);
    io.out << fmt::format("\nPictures in {}: timeline_rank{}.png, scatter_by_kind.png, error_by_size.png\n", o.plots,
                          rank);
  }
  if (!o.csv.empty()) write_file_atomically(o.csv, comparison_csv(comparison));
  if (!o.json.empty()) write_file_atomically(o.json, comparison_json(comparison));

  if (!o.tolerance_given) return 0;
  std::vector<std::string> over;
  if (std::abs(comparison.e2e_relative_error) > o.tolerance || !std::isfinite(comparison.e2e_relative_error)) {
    over.push_back(fmt::format("end to end {:.2f}%", comparison.e2e_relative_error * 100));
  }
  for (const GroupError& kind : comparison.by_kind) {
    if (kind.stats.count > 0 && kind.stats.median_abs > o.tolerance) {
      over.push_back(fmt::format("{} median |e| {:.2f}%", kind.key, kind.stats.median_abs * 100));
    }
  }
  if (over.empty()) {
    io.out << fmt::format("\nWithin tolerance {:.2f}%\n", o.tolerance * 100);
    return 0;
  }
  io.err << fmt::format("paratwin: compare: over the tolerance {:.2f}%: {}\n", o.tolerance * 100,
                        fmt::join(over, "; "));
  return kExitToleranceExceeded;
}

}  // namespace

void add_compare_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<CompareOptions>();
  CLI::App* cmd = root.add_subcommand(
      "compare", "Compare a predicted (simulated) and a measured trace of the same schedule (docs/compare.md)");
  cmd->add_option("predicted", options->predicted, "Predicted trace (paratwin sim --trace)")->required();
  cmd->add_option("measured", options->measured, "Measured trace (paratwin run/bench --trace)")->required();
  cmd->add_option("--csv", options->csv, "Also write every table as CSV to FILE")->group("Output");
  cmd->add_option("--json", options->json, "Also write the comparison as JSON to FILE")->group("Output");
  cmd->add_option("--plots", options->plots, "Draw pictures into DIR (needs python3-matplotlib)")->group("Output");
  cmd->add_option("--rank", options->rank, "Rank whose timelines --plots draws (default: the measured critical rank)")
      ->group("Output");
  cmd->add_option("--tolerance", options->tolerance,
                  "Exit with code 3 when the end-to-end or any kind's median |relative error| exceeds X (0.05 = 5%)")
      ->group("Check");
  cmd->callback([options, &action, io, cmd] {
    options->tolerance_given = cmd->count("--tolerance") > 0;
    action = [options, io] { return run_compare(*options, io); };
  });
}

}  // namespace paratwin::cli
