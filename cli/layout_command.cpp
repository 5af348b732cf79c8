#include <CLI/CLI.hpp>
#include <memory>

#include "cli/cluster_flags.hpp"
#include "cli/commands.hpp"
#include "cli/layout_report.hpp"
#include "cli/parallel_flags.hpp"

namespace paratwin::cli {
namespace {

struct LayoutOptions {
  ParallelFlags parallel;
  ClusterFlags cluster;
  bool json = false;
};

int run_layout(const LayoutOptions& options, Io io) {
  const auto checked = check_parallel_flags(options.parallel);
  const RankLayout layout(checked.config);
  const auto cluster = load_cluster_for(options.cluster, checked.config.world() * checked.config.replicas());
  const Placement placement(layout, cluster);
  io.out << (options.json ? layout_json(layout, placement, checked.warnings)
                          : layout_text(layout, placement, checked.warnings));
  return 0;
}

}  // namespace

void add_layout_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<LayoutOptions>();
  auto* cmd = root.add_subcommand(
      "layout",
      "Print the process groups SGLang builds for these flags (PR #17213 layout), each rank's coordinates and GPU, "
      "SGLang's rule warnings, and the link span of every group");
  add_parallel_flags(*cmd, options->parallel);
  add_cluster_flags(*cmd, options->cluster);
  cmd->add_flag("--json", options->json, "Print one JSON object instead of tables");
  cmd->callback([options, &action, io] { action = [options, io] { return run_layout(*options, io); }; });
}

}  // namespace paratwin::cli
