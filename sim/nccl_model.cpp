// NCCL v2.28.9-1 tuning model, transcribed from src/graph/tuning.cc (ncclTopoTuneModel, ncclTopoGetAlgoTime) and
// src/enqueue.cc (updateCollCostTable, topoGetAlgoInfo). Units inside follow NCCL: µs and GB/s (= 1e3 bytes/µs).

#include "sim/nccl_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "topology/error.hpp"

namespace paratwin::sim {
namespace {

constexpr auto idx(NcclAlgo a) {
  return static_cast<std::size_t>(a);
}
constexpr auto idx(NcclProto p) {
  return static_cast<std::size_t>(p);
}
constexpr auto idx(NcclHw h) {
  return static_cast<std::size_t>(h);
}

int log2i(std::int64_t n) {
  int l = -1;
  while (n > 0) {
    n >>= 1;
    ++l;
  }
  return l;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// nChannels × per-channel bandwidth of a graph, GB/s.
struct Graph {
  int channels = 1;
  double bus_gb_per_s = 0;
};

}  // namespace

AlgoProtoMask parse_algo_proto_mask(const std::string& algorithms, const std::string& protocols) {
  AlgoProtoMask mask;
  auto parse = [](const std::string& list, auto& flags, auto names, const char* what) {
    if (list.empty()) return;
    std::fill(flags.begin(), flags.end(), false);
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ',')) {
      item = lower(item);
      bool found = false;
      for (std::size_t i = 0; i < flags.size(); ++i) {
        if (item == names(i)) {
          flags[i] = true;
          found = true;
        }
      }
      if (!found) fail("sim option {} '{}': unknown entry '{}'", what, list, item);
    }
  };
  parse(
      algorithms, mask.algo, [](std::size_t i) { return to_string(static_cast<NcclAlgo>(i)); }, "algorithms");
  parse(
      protocols, mask.proto, [](std::size_t i) { return to_string(static_cast<NcclProto>(i)); }, "protocols");
  return mask;
}

CollChoice NcclModel::evaluate(NcclFunc func, NcclAlgo algo, NcclProto proto, std::int64_t n_bytes, DType dtype,
                               const CommGeometry& g) const {
  CollChoice out;
  out.algo = algo;
  out.proto = proto;
  out.time_s = -1;
  const int n = g.ranks;
  const int nodes = g.nodes;
  if (n <= 1) {
    out.time_s = 0;
    return out;
  }
  const double ppn = static_cast<double>(n) / nodes;
  const int nsteps = func == NcclFunc::kAllReduce                                         ? 2 * (n - 1)
                     : (func == NcclFunc::kReduceScatter || func == NcclFunc::kAllGather) ? n - 1
                                                                                          : n;
  const bool gather_like = func == NcclFunc::kAllGather || func == NcclFunc::kReduceScatter;
  // Which algorithms exist for which function (ncclTopoTuneModel's skips).
  if (func == NcclFunc::kBroadcast && algo != NcclAlgo::kRing) return out;
  if (gather_like && algo == NcclAlgo::kTree) return out;
  if (func == NcclFunc::kAllReduce && algo == NcclAlgo::kPat) return out;
  if ((algo == NcclAlgo::kNvls) && proto != NcclProto::kSimple) return out;
  if (algo == NcclAlgo::kPat && (proto != NcclProto::kSimple || !p_.pat_enabled || nodes != n)) return out;
  if (algo == NcclAlgo::kNvls && (!g.nvls_available || nodes > 1 || p_.nvls_channels < 2)) return out;
  if (proto == NcclProto::kLl128 && !p_.ll128_enabled) return out;

  const std::size_t index2 = nodes <= 2 ? static_cast<std::size_t>(nodes - 1) : 2;
  const double ll_max_bw =
      nodes == 1 ? p_.ll_max_bw_single_node_gb_per_s : p_.ll_max_bw_multi_node_gb_per_s[index2 - 1];

  // Graph bandwidths: NVLink inside a node, the usable NICs across nodes; a multi-node graph runs at the slower.
  const double intra_ring = p_.nvlink_graph_fraction * g.nvlink_bytes_per_s / 1e9;
  const double intra_tree = p_.tree_graph_fraction * g.nvlink_bytes_per_s / 1e9;
  const double inter = p_.net_graph_fraction * g.nic_bytes_per_s * g.nics_per_node_usable / 1e9;
  auto graph_bw = [&](double intra) {
    if (nodes == 1) return intra;
    if (ppn <= 1.0) return inter;
    return std::min(intra, inter);
  };
  Graph graph;
  switch (algo) {
    case NcclAlgo::kRing:
      graph = {p_.ring_channels, graph_bw(intra_ring)};
      break;
    case NcclAlgo::kTree:
      graph = {p_.tree_channels, graph_bw(intra_tree)};
      break;
    case NcclAlgo::kNvls:
      graph = {p_.nvls_channels, intra_ring};
      break;
    case NcclAlgo::kPat:
      graph = {p_.ring_channels, graph_bw(intra_ring)};
      break;
  }
  const double nch = graph.channels;
  double bus_bw = graph.bus_gb_per_s;
  if (algo == NcclAlgo::kNvls) {
    double intra_bw = graph.bus_gb_per_s / nch * p_.nvls_efficiency * (nch - 1) / nch;
    intra_bw *= func == NcclFunc::kAllReduce ? 2.0 : (ppn - 1) / ppn;
    bus_bw = nch * intra_bw;
  }
  if (algo == NcclAlgo::kRing && proto == NcclProto::kLl) bus_bw = std::min(ll_max_bw, bus_bw * .5);
  if (algo == NcclAlgo::kRing && proto == NcclProto::kLl128) {
    bus_bw = std::min(bus_bw * 0.92, nch * p_.per_channel_max_ring_ll128_gb_per_s[index2]);
  }
  if (algo == NcclAlgo::kTree && func == NcclFunc::kAllReduce) {
    bus_bw = std::min(bus_bw * .92, nch * p_.per_channel_max_tree_gb_per_s[index2]);
  }
  if (algo == NcclAlgo::kTree && proto == NcclProto::kLl) bus_bw = std::min(bus_bw / 3.8, ll_max_bw);
  if (algo == NcclAlgo::kTree && proto == NcclProto::kLl128) {
    bus_bw = std::min(bus_bw * (nodes == 1 ? 7.0 / 9.0 : 120.0 / 128.0),
                      nch * p_.per_channel_max_tree_ll128_gb_per_s[index2]);
  }
  if (algo == NcclAlgo::kPat) bus_bw *= .75;
  if (!(algo != NcclAlgo::kRing && gather_like)) {
    const double ratio = (algo == NcclAlgo::kRing || algo == NcclAlgo::kNvls) ? static_cast<double>(n) / nsteps : .5;
    bus_bw *= ratio;
  }
  double bw = bus_bw;

  const auto a = idx(algo);
  const auto p = idx(proto);
  double lat = p_.base_latency_us[a][p];
  const NcclHw intra_hw = NcclHw::kNvlink;
  double intra_lat = p_.hw_latency_us[idx(intra_hw)][a][p];
  double inter_lat = (ppn == 1.0 ? p_.hw_latency_us[idx(NcclHw::kNet)][idx(NcclAlgo::kTree)][p]
                                 : p_.hw_latency_us[idx(NcclHw::kNet)][a][p]) +
                     p_.latency_inter_us;
  if (proto == NcclProto::kSimple) inter_lat += p_.latency_inter_us;
  switch (algo) {
    case NcclAlgo::kRing: {
      const NcclHw hw = nodes == 1 ? intra_hw : NcclHw::kNet;
      const double hw_lat = p_.hw_latency_us[idx(hw)][a][p];
      if (func == NcclFunc::kBroadcast) {
        lat += hw_lat;  // graphs[RING]->sameChannels on an NVSwitch node
      } else {
        double net_overhead = 0;
        if (nodes > 1) net_overhead = p_.net_overhead_us * (proto == NcclProto::kSimple ? 3 : 1);
        intra_lat = std::max(intra_lat, net_overhead);
        const int inter_steps = nodes == 1 ? 0 : func == NcclFunc::kAllReduce ? 2 * (nodes - 1) : nodes - 1;
        lat += (nsteps - inter_steps) * intra_lat + inter_steps * inter_lat;
      }
      break;
    }
    case NcclAlgo::kTree:
      if (func == NcclFunc::kAllReduce) lat += 2 * ((n / nodes - 1) * intra_lat + log2i(nodes) * inter_lat);
      break;
    case NcclAlgo::kNvls:
      lat = intra_lat;
      if (nodes > 1) lat += inter_lat;
      break;
    case NcclAlgo::kPat:
      if (gather_like) lat += log2i(nodes) * (inter_lat / 3.5) + n * 2.8;
      break;
  }

  if (bw <= 0) return out;
  // ncclTopoGetAlgoTime
  const int log_size = log2i(n_bytes >> 6);
  if (algo == NcclAlgo::kTree && func == NcclFunc::kAllReduce && log_size >= 0 && log_size < 23) {
    bw *= p_.tree_correction_factor[p][static_cast<std::size_t>(log_size)];
  }
  if (algo == NcclAlgo::kRing && proto == NcclProto::kSimple && nodes > 1 && func == NcclFunc::kAllReduce &&
      n_bytes / (static_cast<std::int64_t>(p_.ring_channels) * n) >= 64) {
    lat *= p_.ring_simple_plateau_factor;
  }
  double time_us = lat + static_cast<double>(n_bytes) / (1000.0 * bw);
  // enqueue.cc: fp8 rings deeper than 8 ranks lose precision and are made least preferred.
  if (dtype == DType::kFp8 && algo == NcclAlgo::kRing && n > 8) time_us *= 1024.0;
  out.latency_s = lat * 1e-6;
  out.algbw_bytes_per_s = bw * 1e9;
  out.time_s = time_us * 1e-6;
  return out;
}

CollChoice NcclModel::choose(NcclFunc func, std::int64_t n_bytes, DType dtype, const CommGeometry& geometry,
                             const AlgoProtoMask& mask) const {
  CollChoice best;
  double best_time = std::numeric_limits<double>::infinity();
  bool found = false;
  for (int a = 0; a < kNcclAlgoCount; ++a) {
    if (!mask.algo[static_cast<std::size_t>(a)]) continue;
    for (int p = 0; p < kNcclProtoCount; ++p) {
      if (!mask.proto[static_cast<std::size_t>(p)]) continue;
      const CollChoice c =
          evaluate(func, static_cast<NcclAlgo>(a), static_cast<NcclProto>(p), n_bytes, dtype, geometry);
      if (c.time_s >= 0 && c.time_s < best_time) {
        best = c;
        best_time = c.time_s;
        found = true;
      }
    }
  }
  if (!found) {
    fail(
        "no NCCL algorithm/protocol is available for this collective on {} ranks over {} nodes with the sim "
        "options' algorithms/protocols restriction",
        geometry.ranks, geometry.nodes);
  }
  return best;
}

NcclModel::P2pCost NcclModel::p2p(std::int64_t max_peer_bytes, bool cross_node, const CommGeometry& g) const {
  P2pCost out;
  out.proto = max_peer_bytes <= p_.p2p_ll_threshold_bytes ? NcclProto::kLl : NcclProto::kSimple;
  const auto ring = idx(NcclAlgo::kRing);
  const auto p = idx(out.proto);
  const NcclHw hw = cross_node ? NcclHw::kNet : NcclHw::kNvlink;
  // One ring step of NCCL's model: what it predicts for a 2-rank broadcast, i.e. one send.
  out.latency_s = (p_.base_latency_us[ring][p] + p_.hw_latency_us[idx(hw)][ring][p]) * 1e-6;
  const double nvlink = p_.nvlink_graph_fraction * g.nvlink_bytes_per_s;
  const double net = p_.net_graph_fraction * g.nic_bytes_per_s;
  if (out.proto == NcclProto::kLl) {
    const std::size_t index2 = g.nodes <= 2 ? static_cast<std::size_t>(std::max(g.nodes, 1) - 1) : 2;
    const double ll_max =
        (g.nodes <= 1 ? p_.ll_max_bw_single_node_gb_per_s : p_.ll_max_bw_multi_node_gb_per_s[index2 - 1]) * 1e9;
    out.nvlink_bytes_per_s = std::min(ll_max, 0.5 * nvlink);
    out.net_bytes_per_s = std::min(ll_max, 0.5 * net);
  } else {
    out.nvlink_bytes_per_s = nvlink;
    out.net_bytes_per_s = net;
  }
  return out;
}

}  // namespace paratwin::sim
