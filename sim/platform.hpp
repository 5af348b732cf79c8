#pragma once
/// The simulated hardware: one SimGrid host per GPU, per-GPU NVLink up/down links into an NVSwitch, NIC links into
/// a rail-optimized or fat-tree scale-out network. Internal to sim/ (SimGrid types are only forward-declared here);
/// sim/platform.cpp is the only file that calls SimGrid's platform API.
///
/// Routes are known here too (the same ones SimGrid uses), so the engine can compute path latencies, decide whether
/// a collective's links are private to its members, and account bytes per link without asking SimGrid.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/calibration.hpp"
#include "topology/cluster.hpp"

namespace simgrid::s4u {
class Host;
}

namespace paratwin::sim {

/// One direction of one physical link.
struct LinkInfo {
  std::string name;        ///< e.g. "n0g3.nvlink.up", "n1.nic2.down", "n1.uplink.up"
  std::string link_class;  ///< "nvlink", "nic", "uplink"
  double bandwidth_bytes_per_s = 0;
  double latency_s = 0;
  std::vector<int> owners;  ///< GPUs whose traffic alone can use this link (empty: shared by many nodes)
};

/// The link directions of one route (at most NIC up, uplink up, uplink down, NIC down).
struct Route {
  std::array<int, 4> links{};
  int size = 0;
  [[nodiscard]] const int* begin() const { return links.data(); }
  [[nodiscard]] const int* end() const { return links.data() + size; }
  void push(int link) { links[static_cast<std::size_t>(size++)] = link; }
};

class Platform {
 public:
  /// Builds the SimGrid platform for nodes [0, nodes_used) of `cluster`, with calibration overrides of the link
  /// classes. Must be called after configure_simgrid(). Throws paratwin::Error for non-positive bandwidths.
  Platform(const Cluster& cluster, int nodes_used, const Calibration& calibration);

  /// Sets SimGrid's configuration: ptask_L07 host model (fair sharing independent of latency, parallel tasks),
  /// TCP-gamma 0 and no cross-traffic, so one transfer takes exactly latency + bytes / bandwidth.
  static void configure_simgrid();

  [[nodiscard]] int gpu_count() const { return static_cast<int>(hosts_.size()); }
  [[nodiscard]] int gpus_per_node() const { return gpus_per_node_; }
  [[nodiscard]] int node_of(int gpu) const { return gpu / gpus_per_node_; }
  [[nodiscard]] simgrid::s4u::Host* host(int gpu) const { return hosts_[static_cast<std::size_t>(gpu)]; }
  [[nodiscard]] const std::vector<LinkInfo>& links() const { return links_; }
  /// Link directions a transfer from `src` to `dst` crosses (empty for src == dst).
  [[nodiscard]] Route route(int src, int dst) const;
  [[nodiscard]] double route_latency_s(int src, int dst) const;
  /// Bandwidth of the scale-up (NVLink) and NIC links, per direction.
  [[nodiscard]] double nvlink_bytes_per_s() const { return nvlink_bytes_per_s_; }
  [[nodiscard]] double nic_bytes_per_s() const { return nic_bytes_per_s_; }
  /// The NIC a GPU sends through (index within its node).
  [[nodiscard]] int nic_of(int gpu) const;
  /// CPU speed of every host; parallel tasks express NCCL's bandwidth caps as a CPU amount on it.
  static constexpr double kHostSpeed = 1e9;

 private:
  int gpus_per_node_ = 0;
  int nics_per_node_ = 0;
  bool fat_tree_ = false;
  double nvlink_bytes_per_s_ = 0;
  double nic_bytes_per_s_ = 0;
  std::vector<simgrid::s4u::Host*> hosts_;
  std::vector<LinkInfo> links_;
  // Link ids: nvlink up/down per GPU, NIC up/down per (node, nic), uplink up/down per node (fat tree).
  std::vector<int> nvl_up_, nvl_down_, nic_up_, nic_down_, uplink_up_, uplink_down_;
};

}  // namespace paratwin::sim
