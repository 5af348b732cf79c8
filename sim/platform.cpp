// The only file that calls SimGrid's platform API (and its configuration). SimGrid 3.32 names: create_star_zone,
// create_host, create_split_duplex_link, add_route with NetPoints, add_bypass_route; newer releases rename them
// (add_netzone_star, add_host, add_split_duplex_link), hence the version switch below.

#include "sim/platform.hpp"

// clang-format off
#include <cmath>
#include <simgrid/s4u.hpp>
#include <simgrid/version.h>  // after s4u.hpp: it needs the SG_BEGIN_DECL macros s4u.hpp brings in
// clang-format on

#include "topology/error.hpp"

namespace paratwin::sim {
namespace {

namespace sg4 = simgrid::s4u;
using Direction = sg4::LinkInRoute::Direction;

void require_positive(double value, const char* key, const std::string& cluster) {
  if (!(value > 0) || !std::isfinite(value)) {
    fail("cluster {}: {} = {} must be a positive finite number for the simulator", cluster, key, value);
  }
}

void require_non_negative(double value, const char* key, const std::string& cluster) {
  if (!(value >= 0) || !std::isfinite(value)) {
    fail("cluster {}: {} = {} must be ≥ 0 for the simulator", cluster, key, value);
  }
}

}  // namespace

void Platform::configure_simgrid() {
  // L07 shares a link max-min fairly whatever the route latencies (CM02 weights flows by 1/RTT) and runs parallel
  // tasks, which the all-to-all and the collapsed collectives use. TCP-gamma 0 removes the gamma/(2·latency)
  // window cap (0 = unbounded); crosstraffic 0 removes the 5 % reverse-path load. See simgrid-notes.md.
  sg4::Engine::set_config("host/model:ptask_L07");
  sg4::Engine::set_config("network/TCP-gamma:0");
  sg4::Engine::set_config("network/crosstraffic:0");
}

Platform::Platform(const Cluster& cluster, int nodes_used, const Calibration& calibration)
    : gpus_per_node_(cluster.gpus_per_node), nics_per_node_(cluster.scale_out.nics_per_node) {
  const std::string& name = cluster.name;
  if (cluster.gpus_per_node <= 0) fail("cluster {}: gpus_per_node = {} must be > 0", name, cluster.gpus_per_node);
  PARATWIN_ASSERT(nodes_used >= 1 && nodes_used <= cluster.nodes, "nodes_used {} of {}", nodes_used, cluster.nodes);
  nvlink_bytes_per_s_ = calibration.nvlink.bandwidth_bytes_per_s.value_or(cluster.scale_up.bandwidth_bytes_per_s);
  const double nvlink_latency = calibration.nvlink.latency_s.value_or(cluster.scale_up.latency_s);
  require_positive(nvlink_bytes_per_s_, "scale_up.bandwidth_bytes_per_s", name);
  require_non_negative(nvlink_latency, "scale_up.latency_s", name);
  nic_bytes_per_s_ = calibration.network.bandwidth_bytes_per_s.value_or(cluster.scale_out.nic_bandwidth_bytes_per_s);
  const double net_latency = calibration.network.latency_s.value_or(cluster.scale_out.latency_s);
  if (nodes_used > 1) {
    if (nics_per_node_ <= 0) fail("cluster {}: scale_out.nics_per_node = {} must be > 0", name, nics_per_node_);
    require_positive(nic_bytes_per_s_, "scale_out.nic_bandwidth_bytes_per_s", name);
    require_non_negative(net_latency, "scale_out.latency_s", name);
    if (cluster.scale_out.topology == ScaleOutTopology::kFatTree) {
      if (!(cluster.scale_out.oversubscription >= 1.0)) {
        fail("cluster {}: scale_out.oversubscription = {} must be ≥ 1", name, cluster.scale_out.oversubscription);
      }
      fat_tree_ = true;
    }
  } else {
    nics_per_node_ = std::max(nics_per_node_, 1);
  }
  if (!(nic_bytes_per_s_ > 0)) nic_bytes_per_s_ = nvlink_bytes_per_s_;  // never used on one node

  auto add_link = [this](std::string link_name, std::string link_class, double bw, double lat,
                         std::vector<int> owners) {
    links_.push_back(LinkInfo{std::move(link_name), std::move(link_class), bw, lat, std::move(owners)});
    return static_cast<int>(links_.size()) - 1;
  };

#if SIMGRID_VERSION < 34000
  sg4::NetZone* zone = sg4::create_star_zone("paratwin");
#else
  sg4::NetZone* zone = sg4::Engine::get_instance()->get_netzone_root()->add_netzone_star("paratwin");
#endif
  const int gpn = gpus_per_node_;
  const int total = nodes_used * gpn;
  hosts_.reserve(static_cast<std::size_t>(total));
  std::vector<sg4::SplitDuplexLink*> nvlinks;
  std::vector<sg4::SplitDuplexLink*> nics;
  std::vector<sg4::SplitDuplexLink*> uplinks;
  const double uplink_bw = fat_tree_ ? nics_per_node_ * nic_bytes_per_s_ / cluster.scale_out.oversubscription : 0;
  for (int node = 0; node < nodes_used; ++node) {
    for (int nic = 0; nic < nics_per_node_; ++nic) {
      const std::string base = fmt::format("n{}.nic{}", node, nic);
#if SIMGRID_VERSION < 34000
      auto* link = zone->create_split_duplex_link(base, nic_bytes_per_s_);
#else
      auto* link = zone->add_split_duplex_link(base, nic_bytes_per_s_);
#endif
      link->set_latency(net_latency / 2)->seal();
      nics.push_back(link);
      std::vector<int> owners;
      for (int g = 0; g < gpn; ++g) {
        if (g * nics_per_node_ / gpn == nic) owners.push_back(node * gpn + g);
      }
      nic_up_.push_back(add_link(base + ".up", "nic", nic_bytes_per_s_, net_latency / 2, owners));
      nic_down_.push_back(add_link(base + ".down", "nic", nic_bytes_per_s_, net_latency / 2, owners));
    }
    if (fat_tree_) {
      const std::string base = fmt::format("n{}.uplink", node);
#if SIMGRID_VERSION < 34000
      auto* link = zone->create_split_duplex_link(base, uplink_bw);
#else
      auto* link = zone->add_split_duplex_link(base, uplink_bw);
#endif
      link->set_latency(0)->seal();
      uplinks.push_back(link);
      uplink_up_.push_back(add_link(base + ".up", "uplink", uplink_bw, 0, {}));
      uplink_down_.push_back(add_link(base + ".down", "uplink", uplink_bw, 0, {}));
    }
    for (int g = 0; g < gpn; ++g) {
      const int gpu = node * gpn + g;
      const std::string host_name = fmt::format("n{}g{}", node, g);
#if SIMGRID_VERSION < 34000
      sg4::Host* host = zone->create_host(host_name, kHostSpeed);
      auto* nvl = zone->create_split_duplex_link(host_name + ".nvlink", nvlink_bytes_per_s_);
#else
      sg4::Host* host = zone->add_host(host_name, kHostSpeed);
      auto* nvl = zone->add_split_duplex_link(host_name + ".nvlink", nvlink_bytes_per_s_);
#endif
      host->seal();
      nvl->set_latency(nvlink_latency / 2)->seal();
      hosts_.push_back(host);
      nvlinks.push_back(nvl);
      nvl_up_.push_back(add_link(host_name + ".nvlink.up", "nvlink", nvlink_bytes_per_s_, nvlink_latency / 2, {gpu}));
      nvl_down_.push_back(
          add_link(host_name + ".nvlink.down", "nvlink", nvlink_bytes_per_s_, nvlink_latency / 2, {gpu}));
      // Star route to the network core: the GPU's NIC, then (fat tree) its node's uplink.
      std::vector<sg4::LinkInRoute> to_core = {
          sg4::LinkInRoute(nics[static_cast<std::size_t>(node * nics_per_node_ + nic_of(gpu))], Direction::UP)};
      if (fat_tree_) to_core.emplace_back(uplinks[static_cast<std::size_t>(node)], Direction::UP);
      zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr, to_core, true);
    }
    // Inside a node every GPU pair goes through the NVSwitch: source's NVLink up, destination's NVLink down.
    for (int a = 0; a < gpn; ++a) {
      for (int b = 0; b < gpn; ++b) {
        if (a == b) continue;
        const auto ia = static_cast<std::size_t>(node * gpn + a);
        const auto ib = static_cast<std::size_t>(node * gpn + b);
        zone->add_bypass_route(
            hosts_[ia]->get_netpoint(), hosts_[ib]->get_netpoint(), nullptr, nullptr,
            {sg4::LinkInRoute(nvlinks[ia], Direction::UP), sg4::LinkInRoute(nvlinks[ib], Direction::DOWN)});
      }
    }
  }
  zone->seal();
  (void)total;
}

int Platform::nic_of(int gpu) const {
  return (gpu % gpus_per_node_) * nics_per_node_ / gpus_per_node_;
}

Route Platform::route(int src, int dst) const {
  Route out;
  if (src == dst) return out;
  const auto s = static_cast<std::size_t>(src);
  const auto d = static_cast<std::size_t>(dst);
  const int ns = node_of(src);
  const int nd = node_of(dst);
  if (ns == nd) {
    out.push(nvl_up_[s]);
    out.push(nvl_down_[d]);
    return out;
  }
  out.push(nic_up_[static_cast<std::size_t>(ns * nics_per_node_ + nic_of(src))]);
  if (fat_tree_) {
    out.push(uplink_up_[static_cast<std::size_t>(ns)]);
    out.push(uplink_down_[static_cast<std::size_t>(nd)]);
  }
  out.push(nic_down_[static_cast<std::size_t>(nd * nics_per_node_ + nic_of(dst))]);
  return out;
}

double Platform::route_latency_s(int src, int dst) const {
  double latency = 0;
  for (const int link : route(src, dst)) latency += links_[static_cast<std::size_t>(link)].latency_s;
  return latency;
}

}  // namespace paratwin::sim
