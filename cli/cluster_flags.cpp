#include "cli/cluster_flags.hpp"

#include <fmt/ranges.h>

#include <CLI/CLI.hpp>

#include "topology/error.hpp"

namespace paratwin::cli {

void add_cluster_flags(CLI::App& app, ClusterFlags& flags) {
  const auto presets = fmt::format("{}", fmt::join(cluster_preset_names(), ", "));
  app.add_option("--cluster", flags.cluster, "Cluster preset (" + presets + ") or a cluster YAML file")
      ->capture_default_str()
      ->group("Cluster");
  app.add_option("--nodes", flags.nodes, "Nodes in the cluster (default: as many as the layout needs)")
      ->group("Cluster");
}

Cluster load_cluster_for(const ClusterFlags& flags, int gpus_needed) {
  if (flags.nodes < 0) fail("--nodes {} is invalid: the node count must be at least 1", flags.nodes);
  if (flags.nodes > 0) return load_cluster(flags.cluster, flags.nodes);
  auto cluster = load_cluster(flags.cluster, 0);
  cluster.nodes = (gpus_needed + cluster.gpus_per_node - 1) / cluster.gpus_per_node;
  return cluster;
}

}  // namespace paratwin::cli
