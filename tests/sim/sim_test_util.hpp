#pragma once
// Hand-made clusters, placements and schedules for the simulator tests.

#include <cstdint>
#include <string>
#include <vector>

#include "models/schedule.hpp"
#include "sim/sim_backend.hpp"
#include "topology/cluster.hpp"
#include "topology/placement.hpp"

namespace paratwin::test {

/// H200-like nodes: 450 GB/s NVLink (0.6 µs hop), one 50 GB/s NIC per GPU (2.7 µs NIC to NIC), rail-optimized.
Cluster h200_cluster(int nodes, int gpus_per_node = 8);
/// `world` ranks placed consecutively (tp = world) on `cluster`.
Placement place(int world, const Cluster& cluster);

/// Builds schedules op by op; every op gets the next index on its rank.
class ScheduleMaker {
 public:
  explicit ScheduleMaker(int ranks);
  /// A compute op on `rank`; returns its index.
  int compute(int rank, const ComputeOp& op, std::vector<int> deps = {}, int layer = -1, const std::string& name = "");
  /// One collective instance over `ranks` (in group order); returns each member's op index.
  std::vector<int> collective(const std::vector<int>& ranks, CollectiveKind kind, std::int64_t bytes,
                              const std::vector<std::vector<int>>& deps = {}, int layer = -1,
                              DType dtype = DType::kBf16);
  /// An all-to-all where member i sends send[i][j] bytes to member j.
  std::vector<int> all_to_all(const std::vector<int>& ranks, const std::vector<std::vector<std::int64_t>>& send,
                              int layer = -1, const std::vector<std::vector<int>>& deps = {});
  /// A send/recv pair; returns {send index, recv index}.
  std::pair<int, int> send_recv(int src, int dst, std::int64_t bytes, std::vector<int> src_deps = {},
                                std::vector<int> dst_deps = {}, int layer = -1);
  [[nodiscard]] Schedule take() { return std::move(schedule_); }
  [[nodiscard]] const Schedule& get() const { return schedule_; }

 private:
  Op& add(int rank, Stream stream, std::vector<int> deps, int layer, const std::string& name);
  Schedule schedule_;
  std::int64_t next_instance_ = 1;
  std::int64_t next_match_ = 1;
};

/// A GEMM op [m×k]·[k×n] in `dtype` with its FLOPs and minimum HBM bytes.
ComputeOp gemm(std::int64_t m, std::int64_t n, std::int64_t k, DType dtype = DType::kBf16);
/// A compute op of a given duration-free cost (kind kGemm by default).
ComputeOp cost(double flops, double bytes, ComputeKind kind = ComputeKind::kGemm);

/// SimOptions of the pure α-β model (no NCCL caps or latencies).
SimOptions alpha_beta();

/// The event of (rank, op).
const Event& event(const Trace& trace, int rank, int op);

/// A synthetic DeepSeek-V3.2-like prefill: `layers` layers of MLA attention with a CP all-gather of the latent KV,
/// a TP all-reduce and an MoE with all-to-all dispatch/combine; `world` ranks, tp groups of `tp` consecutive ranks,
/// cp groups of stride `tp`, EP groups of min(world, 64) consecutive ranks.
Schedule deepseek_like_prefill(int world, int tp, int layers, std::int64_t tokens);

}  // namespace paratwin::test
