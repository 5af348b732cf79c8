// All-to-all(v) as NCCL 2.28 runs it (ncclAlltoAll / grouped ncclSend+ncclRecv): every pair exchanges its bytes at
// once, protocol LL up to NCCL_P2P_LL_THRESHOLD bytes per peer and Simple above. All flows of the instance form one
// parallel task (for ≤ 64 GPUs), which completes when the most loaded link (an NVLink port or, across nodes, one NIC
// per GPU) has drained.

#include <algorithm>
#include <map>
#include <vector>

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {

FlowPlan plan_all_to_all(const PlanContext& ctx, const GroupGeometry& group,
                         const std::vector<std::vector<std::int64_t>>& send_bytes) {
  FlowPlan plan;
  plan.algorithm = "p2p";
  const int n = group.size();
  const Platform& platform = ctx.platform;
  std::int64_t max_peer = 0;
  bool cross_node = false;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      const std::int64_t bytes = send_bytes[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
      if (bytes <= 0) continue;
      max_peer = std::max(max_peer, bytes);
      const int src = group.gpus[static_cast<std::size_t>(i)];
      const int dst = group.gpus[static_cast<std::size_t>(j)];
      if (platform.node_of(src) != platform.node_of(dst)) cross_node = true;
    }
  }
  // Same-node pairs: one flow each (NVLink). Node pairs (A, B): the p_A × p_B block of cross-node bytes becomes at
  // most p_A + p_B − 1 flows by the north-west-corner rule, which keeps every row sum (what each source sends to B)
  // and every column sum (what each destination receives from A). Every link a cross-node flow crosses — the
  // source's NIC up, the node uplinks, the destination's NIC down — carries a sum over a row, a column or a whole
  // block, so every link load equals that of the n² exact flows.
  for (std::size_t a = 0; a < group.nodes.size(); ++a) {
    const auto& sources = group.members_by_node[a];
    for (std::size_t b = 0; b < group.nodes.size(); ++b) {
      const auto& dests = group.members_by_node[b];
      if (a == b) {
        for (const int i : sources) {
          for (const int j : dests) {
            const std::int64_t bytes = send_bytes[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
            if (i == j || bytes <= 0) continue;
            plan.flows.push_back(Flow{group.gpus[static_cast<std::size_t>(i)], group.gpus[static_cast<std::size_t>(j)],
                                      static_cast<double>(bytes)});
          }
        }
        continue;
      }
      std::vector<double> row(sources.size(), 0.0), col(dests.size(), 0.0);
      for (std::size_t x = 0; x < sources.size(); ++x) {
        for (std::size_t y = 0; y < dests.size(); ++y) {
          const auto bytes =
              static_cast<double>(send_bytes[static_cast<std::size_t>(sources[x])][static_cast<std::size_t>(dests[y])]);
          row[x] += bytes;
          col[y] += bytes;
        }
      }
      std::size_t x = 0;
      std::size_t y = 0;
      while (x < sources.size() && y < dests.size()) {
        if (row[x] <= 0) {
          ++x;
          continue;
        }
        if (col[y] <= 0) {
          ++y;
          continue;
        }
        const double moved = std::min(row[x], col[y]);
        plan.flows.push_back(Flow{group.gpus[static_cast<std::size_t>(sources[x])],
                                  group.gpus[static_cast<std::size_t>(dests[y])], moved});
        row[x] -= moved;
        col[y] -= moved;
        if (row[x] <= 0) ++x;
        if (col[y] <= 0) ++y;
      }
    }
  }

  if (!ctx.nccl_model) {
    plan.latency_s = max_route_latency(platform, plan.flows);
    return plan;
  }
  CommGeometry geometry = comm_geometry(ctx, group);
  const NcclModel::P2pCost cost = ctx.nccl.p2p(max_peer, cross_node, geometry);
  plan.protocol = std::string(to_string(cost.proto));
  plan.latency_s = cost.latency_s;
  std::map<int, std::pair<double, double>> volume;  // gpu → (NVLink bytes, network bytes)
  for (const Flow& flow : plan.flows) {
    auto& v = volume[flow.src];
    (platform.node_of(flow.src) == platform.node_of(flow.dst) ? v.first : v.second) += flow.bytes;
  }
  double slowest = 0;
  for (const auto& [gpu, v] : volume) {
    const double t = std::max(v.first / cost.nvlink_bytes_per_s, v.second / cost.net_bytes_per_s);
    plan.min_time_per_gpu.emplace_back(gpu, t);
    slowest = std::max(slowest, t);
  }
  plan.model_time_s = plan.latency_s + slowest;
  return plan;
}

}  // namespace paratwin::sim
