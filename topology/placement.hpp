#pragma once
/// Placement of ranks on GPUs, and what each process group spans on the hardware.

#include <string>
#include <vector>

#include "topology/cluster.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {

/// Where one rank runs.
struct GpuLocation {
  int node = 0;
  int gpu = 0;  ///< local GPU index inside the node
  friend bool operator==(const GpuLocation&, const GpuLocation&) = default;
};

/// What one group spans.
///
/// Bottleneck rule: a group whose ranks all sit on one node talks over NVLink, so its bottleneck is the per-GPU,
/// per-direction NVLink bandwidth (scale_up.bandwidth_bytes_per_s); a group of one rank crosses no link and gets the
/// same figure, so the value is always finite and positive. A group spanning several nodes is bounded by
/// min(NVLink, per-GPU scale-out share), the share being nics_per_node × nic_bandwidth / gpus_per_node (all GPUs of a
/// node send across nodes at once, as the collectives of sibling groups do), divided by the oversubscription on a
/// fat tree (Cluster::per_gpu_scale_out_bytes_per_s).
struct GroupSpan {
  std::vector<int> nodes;             ///< distinct nodes, ascending
  bool single_nvlink_domain = true;   ///< every member on one node (one NVSwitch domain)
  double bottleneck_bytes_per_s = 0;  ///< slowest per-GPU link a collective of the group must cross
  [[nodiscard]] std::string link_class() const { return single_nvlink_domain ? "nvlink" : "network"; }
};

/// Rank → GPU, consecutive like SGLang's launcher: rank r of replica d runs on global GPU d·world + r, node
/// global_gpu / gpus_per_node. Throws paratwin::Error when the cluster has fewer GPUs than replicas × world.
class Placement {
 public:
  Placement(const RankLayout& layout, const Cluster& cluster);

  [[nodiscard]] const GpuLocation& location(int rank) const { return locations_[static_cast<std::size_t>(rank)]; }
  [[nodiscard]] int world_size() const { return static_cast<int>(locations_.size()); }
  [[nodiscard]] const Cluster& cluster() const { return cluster_; }
  /// The span of one group (any non-empty list of ranks of this world) in replica 0.
  [[nodiscard]] GroupSpan span(const std::vector<int>& ranks) const { return span(ranks, 0); }
  /// GPUs used in all, counting plain-DP replicas.
  [[nodiscard]] int gpus_used() const { return gpus_used_; }

  /// Plain-DP replicas placed (ParallelConfig::replicas()); replica d runs on global GPUs [d·world, (d+1)·world).
  [[nodiscard]] int replicas() const { return replicas_; }
  /// Where `rank` of replica `replica` runs; replica_location(0, r) == location(r).
  [[nodiscard]] GpuLocation replica_location(int replica, int rank) const;
  /// The span of a group in replica `replica`. Replicas differ when the world size is not a multiple of
  /// gpus_per_node: a replica then starts in the middle of a node and its groups may cross other node boundaries.
  [[nodiscard]] GroupSpan span(const std::vector<int>& ranks, int replica) const;

 private:
  Cluster cluster_;
  std::vector<GpuLocation> locations_;
  int gpus_used_ = 0;
  int replicas_ = 1;
};

}  // namespace paratwin
