#pragma once
/// Cluster hardware: nodes of GPUs joined by a scale-up fabric (NVSwitch) and a scale-out network (NICs).
/// Users edit YAML files (topology/clusters/*.yaml); the same files are compiled in as built-in presets.
/// All bandwidths are bytes per second per direction, latencies seconds, FLOP rates dense FLOP/s.
/// The YAML schema and its rules are documented in topology/clusters/README.md.

#include <string>
#include <string_view>
#include <vector>

namespace paratwin {

/// One GPU model.
struct GpuSpec {
  std::string name;            ///< e.g. "H200-SXM"
  double memory_bytes = 0;     ///< HBM capacity
  double bf16_flops = 0;       ///< dense bf16 tensor-core peak, FLOP/s
  double fp8_flops = 0;        ///< dense fp8 tensor-core peak, FLOP/s
  double hbm_bytes_per_s = 0;  ///< HBM bandwidth
  friend bool operator==(const GpuSpec&, const GpuSpec&) = default;
};

/// The scale-up fabric inside a node: every GPU on one NVSwitch domain.
struct ScaleUpFabric {
  std::string kind = "nvswitch";
  double bandwidth_bytes_per_s = 0;  ///< per GPU, per direction (NVLink4 × 18: 450e9 line rate)
  double latency_s = 0;              ///< one GPU-to-GPU hop through the switch
  bool nvls = false;                 ///< NVLink SHARP (in-switch reduction) available to NCCL
  friend bool operator==(const ScaleUpFabric&, const ScaleUpFabric&) = default;
};

/// How nodes are joined.
enum class ScaleOutTopology { kRailOptimized, kFatTree };
[[nodiscard]] std::string_view to_string(ScaleOutTopology topology);

/// The scale-out network between nodes.
struct ScaleOutNetwork {
  int nics_per_node = 0;
  double nic_bandwidth_bytes_per_s = 0;  ///< per NIC, per direction
  double latency_s = 0;                  ///< NIC to NIC across the network
  ScaleOutTopology topology = ScaleOutTopology::kRailOptimized;
  double oversubscription = 1.0;  ///< fat-tree only: downlink:uplink ratio at the leaves (≥ 1)
  friend bool operator==(const ScaleOutNetwork&, const ScaleOutNetwork&) = default;
};

/// A cluster: `nodes` identical nodes of `gpus_per_node` GPUs.
struct Cluster {
  std::string name;
  int nodes = 1;
  int gpus_per_node = 8;
  GpuSpec gpu;
  ScaleUpFabric scale_up;
  ScaleOutNetwork scale_out;

  [[nodiscard]] int total_gpus() const { return nodes * gpus_per_node; }
  /// Scale-out bandwidth available to one GPU when all GPUs of its node send across nodes at once
  /// (its share of the node's NICs, divided by the oversubscription of a fat tree).
  [[nodiscard]] double per_gpu_scale_out_bytes_per_s() const;
  friend bool operator==(const Cluster&, const Cluster&) = default;
};

/// Largest cluster paratwin accepts (nodes × gpus_per_node); larger requests are user errors.
inline constexpr int kMaxClusterGpus = 1 << 20;

/// Names of the built-in presets ("h100-sxm", "h200-sxm", ...).
[[nodiscard]] std::vector<std::string> cluster_preset_names();
/// The YAML text of a built-in preset; throws paratwin::Error naming the known presets if there is none.
[[nodiscard]] std::string cluster_preset_yaml(std::string_view name);
/// Parses cluster YAML (`source` names the file in messages). Unknown keys, missing keys, non-positive sizes or
/// bandwidths, and oversubscription < 1 are errors naming the key and the rule.
[[nodiscard]] Cluster parse_cluster_yaml(std::string_view yaml_text, std::string_view source);
/// `name_or_path`: a preset name, else a YAML file path. `nodes` overrides the file's node count when > 0.
[[nodiscard]] Cluster load_cluster(std::string_view name_or_path, int nodes);
/// Checks a cluster built in code with the same rules as the parser.
void validate_cluster(const Cluster& cluster);
/// The cluster as YAML in the schema of topology/clusters/README.md (every key written; numbers in shortest
/// round-trip form), so parse_cluster_yaml(cluster_to_yaml(c), ...) == c for every valid cluster.
[[nodiscard]] std::string cluster_to_yaml(const Cluster& cluster);

}  // namespace paratwin
