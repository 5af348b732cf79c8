// Chooses the algorithm of a collective instance (NCCL's tuning model, or the α-β ring) and builds its flows.

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "sim/collectives/collective.hpp"
#include "topology/error.hpp"

namespace paratwin::sim {

GroupGeometry make_geometry(const Platform& platform, const std::vector<int>& member_gpus) {
  GroupGeometry group;
  group.gpus = member_gpus;
  std::map<int, std::vector<int>> by_node;
  for (std::size_t i = 0; i < member_gpus.size(); ++i) {
    by_node[platform.node_of(member_gpus[i])].push_back(static_cast<int>(i));
  }
  for (auto& [node, members] : by_node) {
    std::sort(members.begin(), members.end(), [&](int a, int b) {
      return member_gpus[static_cast<std::size_t>(a)] < member_gpus[static_cast<std::size_t>(b)];
    });
    group.nodes.push_back(node);
    group.members_by_node.push_back(members);
  }
  return group;
}

CommGeometry comm_geometry(const PlanContext& ctx, const GroupGeometry& group) {
  CommGeometry g;
  g.ranks = group.size();
  g.nodes = static_cast<int>(group.nodes.size());
  g.nvlink_bytes_per_s = ctx.platform.nvlink_bytes_per_s();
  g.nic_bytes_per_s = ctx.platform.nic_bytes_per_s();
  g.nvls_available = ctx.nvls_available;
  int usable = std::numeric_limits<int>::max();
  for (const auto& members : group.members_by_node) {
    std::set<int> nics;
    for (const int pos : members) nics.insert(ctx.platform.nic_of(group.gpus[static_cast<std::size_t>(pos)]));
    usable = std::min(usable, static_cast<int>(nics.size()));
  }
  g.nics_per_node_usable = std::max(usable, 1);
  return g;
}

double max_route_latency(const Platform& platform, const std::vector<Flow>& flows) {
  double latency = 0;
  for (const Flow& flow : flows) latency = std::max(latency, platform.route_latency_s(flow.src, flow.dst));
  return latency;
}

FlowPlan plan_collective(const PlanContext& ctx, const GroupGeometry& group, const CollectiveOp& op) {
  FlowPlan plan;
  const int n = group.size();
  if (n <= 1) return plan;
  NcclFunc func = NcclFunc::kAllGather;
  switch (op.kind) {
    case CollectiveKind::kAllGather:
      func = NcclFunc::kAllGather;
      break;
    case CollectiveKind::kReduceScatter:
      func = NcclFunc::kReduceScatter;
      break;
    case CollectiveKind::kAllReduce:
      func = NcclFunc::kAllReduce;
      break;
    case CollectiveKind::kBroadcast:
      func = NcclFunc::kBroadcast;
      break;
    case CollectiveKind::kAllToAll:
      PARATWIN_ASSERT(false, "all-to-all goes through plan_all_to_all");
      break;
  }
  const bool gather_like = func == NcclFunc::kAllGather || func == NcclFunc::kReduceScatter;
  const std::int64_t n_bytes = gather_like ? op.bytes * n : op.bytes;
  const auto bytes = static_cast<double>(op.bytes);

  NcclAlgo algo = NcclAlgo::kRing;
  CollChoice choice;
  if (ctx.nccl_model) {
    choice = ctx.nccl.choose(func, n_bytes, op.dtype, comm_geometry(ctx, group), ctx.mask);
    algo = choice.algo;
  } else if (func == NcclFunc::kAllReduce && !ctx.mask.algo[static_cast<std::size_t>(NcclAlgo::kRing)] &&
             ctx.mask.algo[static_cast<std::size_t>(NcclAlgo::kTree)]) {
    algo = NcclAlgo::kTree;  // α-β mode offers Ring (default) and Tree
  }
  plan.algorithm = std::string(to_string(algo));

  const double per_rank_ring = func == NcclFunc::kAllReduce   ? 2.0 * (n - 1) / n * bytes
                               : func == NcclFunc::kBroadcast ? bytes
                                                              : (n - 1) * bytes;
  int steps = 0;
  switch (algo) {
    case NcclAlgo::kRing:
      add_ring_flows(group, per_rank_ring, func == NcclFunc::kBroadcast ? op.root : -1, plan.flows);
      steps = func == NcclFunc::kAllReduce ? 2 * (n - 1) : n - 1;
      break;
    case NcclAlgo::kTree: {
      add_tree_allreduce_flows(group, bytes, plan.flows);
      int chain = 0;
      for (const auto& members : group.members_by_node) chain = std::max(chain, static_cast<int>(members.size()) - 1);
      const auto node_count = static_cast<double>(group.nodes.size());
      steps = 2 * (chain + static_cast<int>(std::ceil(std::log2(node_count))));
      break;
    }
    case NcclAlgo::kNvls:
      if (func == NcclFunc::kAllReduce) {
        add_nvls_flows(group, bytes, plan.flows);
      } else {
        add_ring_flows(group, per_rank_ring, -1, plan.flows);
      }
      steps = 1;
      break;
    case NcclAlgo::kPat:
      add_pat_flows(group, bytes, plan.flows);
      steps = static_cast<int>(std::ceil(std::log2(static_cast<double>(n))));
      break;
  }

  if (!ctx.nccl_model) {
    plan.latency_s = steps * max_route_latency(ctx.platform, plan.flows);
    return plan;
  }
  plan.protocol = std::string(to_string(choice.proto));
  plan.latency_s = choice.latency_s;
  plan.model_time_s = choice.time_s;
  // NCCL's algorithm bandwidth bounds how fast every member can push its share.
  const double bw_time = static_cast<double>(n_bytes) / choice.algbw_bytes_per_s;
  std::set<int> senders;
  for (const Flow& flow : plan.flows) senders.insert(flow.src);
  for (const int gpu : senders) plan.min_time_per_gpu.emplace_back(gpu, bw_time);
  return plan;
}

}  // namespace paratwin::sim
