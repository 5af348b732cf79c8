#include "models/schedule_strings.hpp"

#include <fmt/ranges.h>

#include <array>
#include <string_view>
#include <utility>
#include <vector>

#include "models/schedule.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& table, Enum value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "?";
}

template <typename Enum, std::size_t N>
Enum parse_of(const std::array<std::pair<Enum, std::string_view>, N>& table, std::string_view text,
              std::string_view what) {
  std::vector<std::string_view> accepted;
  for (const auto& [v, name] : table) {
    if (name == text) return v;
    accepted.push_back(name);
  }
  fail("{} '{}' is unknown: use one of {}", what, text, fmt::join(accepted, ", "));
}

constexpr std::array<std::pair<ComputeKind, std::string_view>, 16> kComputeKinds = {{
    {ComputeKind::kEmbedding, "embedding"},
    {ComputeKind::kRmsNorm, "rms_norm"},
    {ComputeKind::kGemm, "gemm"},
    {ComputeKind::kGroupedGemm, "grouped_gemm"},
    {ComputeKind::kRope, "rope"},
    {ComputeKind::kAttention, "attention"},
    {ComputeKind::kSparseAttention, "sparse_attention"},
    {ComputeKind::kIndexerScore, "indexer_score"},
    {ComputeKind::kTopK, "topk"},
    {ComputeKind::kMoeRoute, "moe_route"},
    {ComputeKind::kMoePermute, "moe_permute"},
    {ComputeKind::kMoeUnpermute, "moe_unpermute"},
    {ComputeKind::kActivation, "activation"},
    {ComputeKind::kResidualAdd, "residual_add"},
    {ComputeKind::kKvReorder, "kv_reorder"},
    {ComputeKind::kAddRmsNorm, "add_rms_norm"},
}};
constexpr std::array<std::pair<CollectiveKind, std::string_view>, 5> kCollectiveKinds = {{
    {CollectiveKind::kAllGather, "all_gather"},
    {CollectiveKind::kReduceScatter, "reduce_scatter"},
    {CollectiveKind::kAllReduce, "all_reduce"},
    {CollectiveKind::kAllToAll, "all_to_all"},
    {CollectiveKind::kBroadcast, "broadcast"},
}};
constexpr std::array<std::pair<Stream, std::string_view>, 2> kStreams = {
    {{Stream::kCompute, "compute"}, {Stream::kComm, "comm"}}};
constexpr std::array<std::pair<Phase, std::string_view>, 2> kPhases = {
    {{Phase::kPrefill, "prefill"}, {Phase::kDecode, "decode"}}};
constexpr std::array<std::pair<CpAlgorithm, std::string_view>, 3> kCpAlgorithms = {
    {{CpAlgorithm::kAllGather, "allgather"}, {CpAlgorithm::kRing, "ring"}, {CpAlgorithm::kUlysses, "ulysses"}}};
constexpr std::array<std::pair<CpSplit, std::string_view>, 2> kCpSplits = {
    {{CpSplit::kRoundRobin, "round-robin"}, {CpSplit::kZigzag, "zigzag"}}};
constexpr std::array<std::pair<MoeMode, std::string_view>, 2> kMoeModes = {
    {{MoeMode::kAllToAll, "a2a"}, {MoeMode::kGather, "gather"}}};

}  // namespace

std::string_view to_string(ComputeKind kind) {
  return name_of(kComputeKinds, kind);
}
std::string_view to_string(CollectiveKind kind) {
  return name_of(kCollectiveKinds, kind);
}
std::string_view to_string(Stream stream) {
  return name_of(kStreams, stream);
}
std::string_view to_string(Phase phase) {
  return name_of(kPhases, phase);
}
std::string_view to_string(CpAlgorithm algorithm) {
  return name_of(kCpAlgorithms, algorithm);
}
std::string_view to_string(CpSplit split) {
  return name_of(kCpSplits, split);
}
std::string_view to_string(MoeMode mode) {
  return name_of(kMoeModes, mode);
}

ComputeKind parse_compute_kind(std::string_view text) {
  return parse_of(kComputeKinds, text, "compute kind");
}
CollectiveKind parse_collective_kind(std::string_view text) {
  return parse_of(kCollectiveKinds, text, "collective kind");
}
Stream parse_stream(std::string_view text) {
  return parse_of(kStreams, text, "stream");
}
Phase parse_phase(std::string_view text) {
  return parse_of(kPhases, text, "--phase");
}
CpAlgorithm parse_cp_algorithm(std::string_view text) {
  return parse_of(kCpAlgorithms, text, "--cp-algo");
}
CpSplit parse_cp_split(std::string_view text) {
  return parse_of(kCpSplits, text, "--cp-split");
}
MoeMode parse_moe_mode(std::string_view text) {
  return parse_of(kMoeModes, text, "--moe-mode");
}

}  // namespace paratwin
