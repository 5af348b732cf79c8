#pragma once
/// --cluster NAME|FILE and --nodes N.

#include <string>

#include "topology/cluster.hpp"

namespace CLI {
class App;  // <CLI/CLI.hpp> in the .cpp files (see cli/command.hpp)
}

namespace paratwin::cli {

struct ClusterFlags {
  std::string cluster = "h200-sxm";
  int nodes = 0;  ///< 0: as many nodes as the layout needs
};

void add_cluster_flags(CLI::App& app, ClusterFlags& flags);

/// Loads the cluster; with --nodes 0, sizes it to hold `gpus_needed` GPUs.
[[nodiscard]] Cluster load_cluster_for(const ClusterFlags& flags, int gpus_needed);

}  // namespace paratwin::cli
