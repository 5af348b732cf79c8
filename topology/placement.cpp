#include "topology/placement.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "topology/error.hpp"

namespace paratwin {

namespace {

/// How the replicas came about, in flag terms, for the "cluster too small" message.
std::string replica_flags(const ParallelConfig& config) {
  if (config.enable_dp_attention) return "--enable-dp-attention keeps one replica";
  if (config.dp_size == 1) return "--dp-size 1";
  return fmt::format("--dp-size {} without --enable-dp-attention launches {} copies of the world", config.dp_size,
                     config.dp_size);
}

}  // namespace

Placement::Placement(const RankLayout& layout, const Cluster& cluster) : cluster_(cluster) {
  validate_cluster(cluster_);
  const ParallelConfig& config = layout.config();
  const int world = layout.world_size();
  PARATWIN_ASSERT(world >= 1, "layout with world size {}", world);
  replicas_ = config.replicas();
  PARATWIN_ASSERT(replicas_ >= 1, "layout with {} replicas", replicas_);

  const std::int64_t needed = std::int64_t{replicas_} * world;
  const int available = cluster_.total_gpus();
  if (needed > available) {
    fail(
        "the layout needs {} GPUs ({} replica(s) x world {}; world = --tp-size {} x --pp-size {}; {}) but cluster "
        "'{}' has {} GPUs (--nodes {} x {} GPUs per node); add nodes or shrink the layout",
        needed, replicas_, world, config.tp_size, config.pp_size, replica_flags(config), cluster_.name, available,
        cluster_.nodes, cluster_.gpus_per_node);
  }
  gpus_used_ = static_cast<int>(needed);

  // SGLang's launcher hands out GPUs consecutively: replica d's rank r on global GPU d·world + r (replica 0 here).
  locations_.reserve(static_cast<std::size_t>(world));
  for (int rank = 0; rank < world; ++rank) {
    locations_.push_back(GpuLocation{rank / cluster_.gpus_per_node, rank % cluster_.gpus_per_node});
  }
}

GpuLocation Placement::replica_location(int replica, int rank) const {
  const int world = world_size();
  PARATWIN_ASSERT(replica >= 0 && replica < replicas_, "replica {} outside [0, {})", replica, replicas_);
  PARATWIN_ASSERT(rank >= 0 && rank < world, "rank {} outside the world [0, {})", rank, world);
  const int global_gpu = replica * world + rank;
  return GpuLocation{global_gpu / cluster_.gpus_per_node, global_gpu % cluster_.gpus_per_node};
}

GroupSpan Placement::span(const std::vector<int>& ranks, int replica) const {
  PARATWIN_ASSERT(!ranks.empty(), "span of an empty group");
  GroupSpan result;
  result.nodes.reserve(ranks.size());
  for (const int rank : ranks) result.nodes.push_back(replica_location(replica, rank).node);
  std::sort(result.nodes.begin(), result.nodes.end());
  result.nodes.erase(std::unique(result.nodes.begin(), result.nodes.end()), result.nodes.end());
  result.single_nvlink_domain = result.nodes.size() == 1;
  // The rule documented on GroupSpan: NVLink inside a node; across nodes the slower of NVLink and the GPU's share of
  // its node's NICs (divided by the fat-tree oversubscription).
  const double nvlink = cluster_.scale_up.bandwidth_bytes_per_s;
  result.bottleneck_bytes_per_s =
      result.single_nvlink_domain ? nvlink : std::min(nvlink, cluster_.per_gpu_scale_out_bytes_per_s());
  return result;
}

}  // namespace paratwin
