#include "models/builders/op_emitter.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "models/op_costs.hpp"
#include "topology/error.hpp"

namespace paratwin::build {

std::int64_t CollectiveNumbering::instance(GroupFamily family, int group_index, int rank) {
  const int call = calls_by_rank_[{family_index(family), group_index, rank}]++;
  const auto [it, inserted] = instance_ids_.try_emplace({family_index(family), group_index, call}, next_);
  if (inserted) ++next_;
  return it->second;
}

std::string op_prefix(int layer, int micro_batch) {
  std::string prefix = layer >= 0 ? fmt::format("L{}.", layer) : std::string();
  if (micro_batch > 0) prefix += fmt::format("mb{}.", micro_batch);
  return prefix;
}

OpRef RankEmitter::append(const std::string& name, Stream stream, std::vector<OpRef> deps, OpBody body) {
  const int index = static_cast<int>(ops_.size());
  deps.erase(std::remove(deps.begin(), deps.end(), kNoOp), deps.end());
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  for (const int d : deps) PARATWIN_ASSERT(d >= 0 && d < index, "op {} depends on later op {}", name, d);
  Op op;
  op.index = index;
  op.name = op_prefix(layer_, micro_batch_) + name;
  op.stream = stream;
  op.layer = layer_;
  op.phase = phase_;
  op.micro_batch = micro_batch_;
  op.deps = std::move(deps);
  op.body = std::move(body);
  ops_.push_back(std::move(op));
  return index;
}

OpRef RankEmitter::compute(const std::string& name, ComputeKind kind, ComputeShape shape, DType dtype,
                           std::vector<OpRef> deps) {
  ComputeOp op;
  op.kind = kind;
  op.shape = std::move(shape);
  op.dtype = dtype;
  fill_cost(op);
  return append(name, Stream::kCompute, std::move(deps), std::move(op));
}

OpRef RankEmitter::collective(const std::string& name, CollectiveKind kind, GroupFamily family, std::int64_t bytes,
                              DType dtype, std::vector<OpRef> deps, std::vector<std::int64_t> send_bytes,
                              std::vector<std::int64_t> recv_bytes) {
  CollectiveOp op;
  op.kind = kind;
  op.family = family;
  op.group_index = layout_.group_index_of(family, rank_);
  op.group_size = layout_.group_size(family);
  op.dtype = dtype;
  op.bytes = bytes;
  op.send_bytes = std::move(send_bytes);
  op.recv_bytes = std::move(recv_bytes);
  op.instance = numbering_.instance(family, op.group_index, rank_);
  return append(name, Stream::kComm, std::move(deps), std::move(op));
}

OpRef RankEmitter::send(const std::string& name, int peer, std::int64_t bytes, DType dtype, std::int64_t match,
                        std::vector<OpRef> deps, std::int64_t p2p_group) {
  return append(name, Stream::kComm, std::move(deps), P2POp{true, peer, bytes, dtype, match, p2p_group});
}

OpRef RankEmitter::recv(const std::string& name, int peer, std::int64_t bytes, DType dtype, std::int64_t match,
                        std::vector<OpRef> deps, std::int64_t p2p_group) {
  return append(name, Stream::kComm, std::move(deps), P2POp{false, peer, bytes, dtype, match, p2p_group});
}

}  // namespace paratwin::build
