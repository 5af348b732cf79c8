#pragma once
/// Collectives as point-to-point flows. Each algorithm (one file each, like SMPI's colls/ and nccl-tests) turns one
/// collective instance into a FlowPlan: the flows its data takes, the analytic latency, and NCCL's bandwidth cap.
/// Granularity: collapsed — one flow per (rank, peer) carrying the aggregate bytes of all pipeline steps, plus an
/// analytic α term (docs/sim.md, "Granularity"). Internal to sim/.

#include <cstdint>
#include <string>
#include <vector>

#include "models/schedule.hpp"
#include "sim/calibration.hpp"
#include "sim/nccl_model.hpp"
#include "sim/platform.hpp"

namespace paratwin::sim {

/// One aggregated transfer between two GPUs.
struct Flow {
  int src = 0;  ///< GPU id (platform host index)
  int dst = 0;
  double bytes = 0;
};

/// How one collective instance moves data.
struct FlowPlan {
  std::vector<Flow> flows;
  /// Per sending GPU, the shortest time its part may take (NCCL's bandwidth for the chosen algorithm/protocol);
  /// empty entries / zero mean no cap (pure α-β mode).
  std::vector<std::pair<int, double>> min_time_per_gpu;
  double latency_s = 0;     ///< analytic latency of the whole operation (NCCL's lat, or steps × α)
  std::string algorithm;    ///< "ring", "tree", "nvls", "pat", "p2p"
  std::string protocol;     ///< "ll", "ll128", "simple"; "" in pure α-β mode
  double model_time_s = 0;  ///< NCCL's own estimate (tuning model), 0 in α-β mode
};

/// The members of one instance, in group order, and where they are.
struct GroupGeometry {
  std::vector<int> gpus;                          ///< GPU of member i
  std::vector<int> nodes;                         ///< distinct nodes, ascending
  std::vector<std::vector<int>> members_by_node;  ///< positions of members on nodes[k], ascending by local GPU
  [[nodiscard]] int size() const { return static_cast<int>(gpus.size()); }
};

/// What every algorithm may consult.
struct PlanContext {
  const Platform& platform;
  const NcclModel& nccl;
  AlgoProtoMask mask;
  bool nccl_model = true;  ///< false: pure α-β (ring algorithms, per-step α = path latency, no caps)
  bool nvls_available = false;
};

[[nodiscard]] GroupGeometry make_geometry(const Platform& platform, const std::vector<int>& member_gpus);
[[nodiscard]] CommGeometry comm_geometry(const PlanContext& ctx, const GroupGeometry& group);
/// Largest path latency among the plan's flows.
[[nodiscard]] double max_route_latency(const Platform& platform, const std::vector<Flow>& flows);

// ---- algorithms (one file each) ----------------------------------------------------------------------------------
/// ring.cpp: the collapsed ring. Every member sends `per_rank_bytes` to its ring successor; the ring visits nodes in
/// order and members of a node by local GPU; the hop between two nodes is split evenly over min(members) rails.
/// `skip_into` (a member position or -1) drops flows into that member (a broadcast chain's root).
void add_ring_flows(const GroupGeometry& group, double per_rank_bytes, int skip_into, std::vector<Flow>& flows);
/// tree.cpp: NCCL's all-reduce tree: a chain through each node's members (reduce up, broadcast down) and two
/// complementary binary trees across nodes (ncclGetDtree), each carrying half the buffer.
void add_tree_allreduce_flows(const GroupGeometry& group, double bytes, std::vector<Flow>& flows);
/// Parent of `rank` in NCCL's double binary tree `tree` (0 or 1) over `nranks`; -1 for the root.
[[nodiscard]] int dtree_parent(int nranks, int rank, int tree);
/// nvls.cpp: NVLink SHARP inside one node: every GPU pushes its buffer into the switch and pulls the result.
void add_nvls_flows(const GroupGeometry& group, double up_bytes_per_rank, std::vector<Flow>& flows);
/// pat.cpp: PAT (one GPU per node): log2(n) distance-doubling steps, step k moving min(2^k, n−2^k) chunks.
void add_pat_flows(const GroupGeometry& group, double chunk_bytes, std::vector<Flow>& flows);
/// all_to_all.cpp: grouped send/recv; per-pair flows inside a node, and per node pair at most p_A + p_B − 1 flows
/// with the same per-source and per-destination totals (hence the same load on every link) as the per-pair flows.
[[nodiscard]] FlowPlan plan_all_to_all(const PlanContext& ctx, const GroupGeometry& group,
                                       const std::vector<std::vector<std::int64_t>>& send_bytes);
/// send_recv.cpp: one point-to-point transfer.
[[nodiscard]] FlowPlan plan_send_recv(const PlanContext& ctx, int src_gpu, int dst_gpu, std::int64_t bytes);

/// planner.cpp: all-gather, reduce-scatter, all-reduce and broadcast: NCCL's algorithm/protocol choice (or the
/// α-β ring), then the algorithm's flows.
[[nodiscard]] FlowPlan plan_collective(const PlanContext& ctx, const GroupGeometry& group, const CollectiveOp& op);

}  // namespace paratwin::sim
