// Point-to-point send/recv (pipeline hidden states, ring-attention KV blocks): one flow, NCCL's P2P protocol by
// size (LL up to NCCL_P2P_LL_THRESHOLD), latency of one ring step of NCCL's model.

#include "sim/collectives/collective.hpp"

namespace paratwin::sim {

FlowPlan plan_send_recv(const PlanContext& ctx, int src_gpu, int dst_gpu, std::int64_t bytes) {
  FlowPlan plan;
  plan.algorithm = "p2p";
  if (src_gpu != dst_gpu && bytes > 0) plan.flows.push_back(Flow{src_gpu, dst_gpu, static_cast<double>(bytes)});
  const bool cross_node = ctx.platform.node_of(src_gpu) != ctx.platform.node_of(dst_gpu);
  if (!ctx.nccl_model) {
    plan.latency_s = ctx.platform.route_latency_s(src_gpu, dst_gpu);
    return plan;
  }
  CommGeometry geometry;
  geometry.ranks = 2;
  geometry.nodes = cross_node ? 2 : 1;
  geometry.nvlink_bytes_per_s = ctx.platform.nvlink_bytes_per_s();
  geometry.nic_bytes_per_s = ctx.platform.nic_bytes_per_s();
  const NcclModel::P2pCost cost = ctx.nccl.p2p(bytes, cross_node, geometry);
  plan.protocol = std::string(to_string(cost.proto));
  plan.latency_s = cost.latency_s;
  const double bw = cross_node ? cost.net_bytes_per_s : cost.nvlink_bytes_per_s;
  if (!plan.flows.empty()) plan.min_time_per_gpu.emplace_back(src_gpu, static_cast<double>(bytes) / bw);
  plan.model_time_s = plan.latency_s + static_cast<double>(bytes) / bw;
  return plan;
}

}  // namespace paratwin::sim
