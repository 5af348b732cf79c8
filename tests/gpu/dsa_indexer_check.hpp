#pragma once
// Shared by the DSA indexer tests (bf16 operands: test_dsa_kernels.cpp; fp8: test_dsa_fp8_indexer.cpp): the shape of
// one check, the ragged shapes at 64 heads × 128 that both check every tensor-core kernel on, and the walk over a
// kernel's scores that tells the masked keys from the visible ones.
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace paratwin::cuda::dsa_indexer_check {

struct IndexerShape {
  const char* what;
  std::int64_t queries, keys, heads, dim, q_start, q_stride;
  bool causal;
};

// At 64 heads × 128 (the tensor-core kernels'): keys and queries off the kernels' tiles, the causal boundary inside a
// 64-key tile, positions from 0, below 0 and descending, a single key. (Laid out as in the tables that take them.)
// clang-format off
inline constexpr IndexerShape kLastQueries{"causal, last queries of the context", 37, 300, 64, 128, 263, 1, true};
inline constexpr IndexerShape kKeysOnePastATile{"not causal, keys one past a tile", 6, 129, 64, 128, 0, 1, false};
inline constexpr IndexerShape kRaggedBlock{
    "causal, 13 queries (one block and a ragged one), boundary inside a 64-key tile", 13, 300, 64, 128, 287, 1, true};
inline constexpr IndexerShape kFromPositionZero{
    "causal from position 0: keys past the block's last position masked without computing", 20, 200, 64, 128, 0, 1,
    true};
inline constexpr IndexerShape kNegativePositions{
    "causal, negative positions: a block that sees no key", 20, 70, 64, 128, -10, 1, true};
inline constexpr IndexerShape kDescendingPositions{
    "causal, descending positions (negative stride)", 11, 300, 64, 128, 290, -25, true};
inline constexpr IndexerShape kOneKey{"not causal, one key", 3, 1, 64, 128, 0, 1, false};
// clang-format on

struct ScoreCounts {
  std::int64_t masked = 0;  // keys after a causal query's position
  std::int64_t bad = 0;     // masked scores other than −FLT_MAX, visible ones `matches` rejects
};

// Walks the queries × keys scores `got` (row-major) of shape `s`: a key a causal query cannot see must read −FLT_MAX
// (what the indexer writes there); a visible one must pass matches(query, key, score).
template <typename Matches>
ScoreCounts count_scores(const IndexerShape& s, const std::vector<float>& got, Matches matches) {
  ScoreCounts counts;
  for (std::int64_t i = 0; i < s.queries; ++i) {
    const std::int64_t pos = s.q_start + i * s.q_stride;
    for (std::int64_t j = 0; j < s.keys; ++j) {
      const float g = got[static_cast<std::size_t>(i * s.keys + j)];
      if (s.causal && j > pos) {
        ++counts.masked;
        if (g != -FLT_MAX) ++counts.bad;
      } else if (!matches(i, j, g)) {
        ++counts.bad;
      }
    }
  }
  return counts;
}

}  // namespace paratwin::cuda::dsa_indexer_check
