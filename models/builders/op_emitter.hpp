#pragma once
/// Appends ops to one rank's list with stable names, explicit dependencies and costs; numbers collective instances
/// so that every rank of a group gets the same instance number for the same call.

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "models/schedule.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::build {

/// An op already emitted (its index in the rank's list); -1 means "nothing to wait for".
using OpRef = int;
inline constexpr OpRef kNoOp = -1;

/// Gives each collective call one instance number shared by all ranks of its group: the k-th call a rank makes
/// on group (family, index) is the k-th call of every member, because every member issues the same sequence.
class CollectiveNumbering {
 public:
  std::int64_t instance(GroupFamily family, int group_index, int rank);

 private:
  std::map<std::tuple<int, int, int>, int> calls_by_rank_;          // (family, group, rank) -> calls made so far
  std::map<std::tuple<int, int, int>, std::int64_t> instance_ids_;  // (family, group, call) -> instance
  std::int64_t next_ = 0;
};

/// Builds one rank's op list.
class RankEmitter {
 public:
  RankEmitter(int rank, const RankLayout& layout, CollectiveNumbering& numbering, std::vector<Op>& ops)
      : rank_(rank), layout_(layout), numbering_(numbering), ops_(ops) {}

  /// Context stamped on the ops that follow.
  void set_position(int layer, int micro_batch, Phase phase) {
    layer_ = layer;
    micro_batch_ = micro_batch;
    phase_ = phase;
  }

  /// A compute op; its FLOPs and bytes come from models/op_costs.
  OpRef compute(const std::string& name, ComputeKind kind, ComputeShape shape, DType dtype, std::vector<OpRef> deps);
  /// A collective on this rank's group of `family`. For all_to_all, send/recv bytes are per group position.
  OpRef collective(const std::string& name, CollectiveKind kind, GroupFamily family, std::int64_t bytes, DType dtype,
                   std::vector<OpRef> deps, std::vector<std::int64_t> send_bytes = {},
                   std::vector<std::int64_t> recv_bytes = {});
  /// Point-to-point ops; a `p2p_group` ≥ 0 posts this op together with the rank's adjacent ops of that group.
  OpRef send(const std::string& name, int peer, std::int64_t bytes, DType dtype, std::int64_t match,
             std::vector<OpRef> deps, std::int64_t p2p_group = -1);
  OpRef recv(const std::string& name, int peer, std::int64_t bytes, DType dtype, std::int64_t match,
             std::vector<OpRef> deps, std::int64_t p2p_group = -1);

  [[nodiscard]] int rank() const { return rank_; }
  [[nodiscard]] const RankLayout& layout() const { return layout_; }
  [[nodiscard]] int layer() const { return layer_; }
  [[nodiscard]] int micro_batch() const { return micro_batch_; }

 private:
  OpRef append(const std::string& name, Stream stream, std::vector<OpRef> deps, OpBody body);

  int rank_;
  const RankLayout& layout_;
  CollectiveNumbering& numbering_;
  std::vector<Op>& ops_;
  int layer_ = -1;
  int micro_batch_ = 0;
  Phase phase_ = Phase::kPrefill;
};

/// "L3.mb1." style prefix for op names (micro-batch shown only when > 0), "" outside layers.
[[nodiscard]] std::string op_prefix(int layer, int micro_batch);

}  // namespace paratwin::build
