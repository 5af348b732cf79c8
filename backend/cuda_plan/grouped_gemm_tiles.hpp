#pragma once
/// The tile schedule of the backend's persistent grouped GEMM kernel (backend/cuda/grouped_gemm_kernel.cu). Each
/// non-empty group's output Y_g [rows_g × n] is cut into tiles of kGroupedTileRows × kGroupedTileCols; the last row
/// block of a group is partial (its rows past rows_g are never stored), and the kernel computes one of at most
/// kGroupedHalfTileRows rows as that many rows only.
///
/// The kernel runs as clusters of two blocks that share one operand through the copy engine's multicast, so its unit
/// of work is a pair of tiles of one group:
/// - kSharedWeights: row blocks 2p and 2p + 1 of one column block (block r of the cluster takes row block 2p + r;
///   they share the W tile, the larger operand).
/// - kSharedRows: where a group has an odd number of row blocks, its last row block's column blocks 2q and 2q + 1
///   (block r takes column block 2q + r; they share the X tile).
/// - Where the column blocks are odd in number too, the last row block's last column block pairs with the row block
///   past the group's end as kSharedWeights: the second block multiplies zeros and stores nothing.
/// Order within a group: column block by column block, each column block's shared-weight pairs in row order; where the
/// row blocks are odd in number, each column pair (2q, 2q + 1)'s kSharedRows pair right after the shared-weight pairs
/// of column block 2q + 1 (and the zero-partner pair right after those of the last column block). The persistent
/// clusters take consecutive pairs at the same time, so every pair that reads one W column block runs beside the
/// others that read it, and that W comes from device memory once, then from L2 (docs/performance.md "MoE expert
/// GEMMs": with the last row block's pairs after all of a group's shared-weight pairs, its W was read twice).
/// Plain C++ (no CUDA header), so the CPU tests check it; the kernel decodes pairs with the same constexpr function
/// (nvcc's --expt-relaxed-constexpr).

#include <cstdint>
#include <vector>

namespace paratwin::cuda_plan {

inline constexpr int kGroupedTileRows = 128;     ///< two consumer warpgroups × 64 rows
inline constexpr int kGroupedTileCols = 256;     ///< one wgmma m64n256 per warpgroup and k step
inline constexpr int kGroupedTileDepth = 64;     ///< k per pipeline stage: one 128-byte swizzle row of bf16
inline constexpr int kGroupedHalfTileRows = 64;  ///< a remainder this short runs as one wgmma row block

/// Whether the kernel computes an n × k problem: whole column blocks and whole k stages, sizes in int range.
[[nodiscard]] bool grouped_kernel_supports(std::int64_t n, std::int64_t k);

/// `table` holds 2 ints per group given: {rows, first pair}; `pairs` the total. Groups must be non-empty.
struct GroupedTileSchedule {
  std::vector<int> table;
  int groups = 0;
  int pairs = 0;
};

/// The schedule of the non-empty groups `group_rows` at width n (grouped_kernel_supports(n, any k) must hold).
[[nodiscard]] GroupedTileSchedule make_grouped_tile_schedule(const std::vector<std::int64_t>& group_rows,
                                                             std::int64_t n);

/// The tensor cores' work over the useful work: rows × columns the kernel computes (whole row blocks of 128, a
/// remainder of at most 64 as 64, the zeros of an unpaired tile's partner) over Σ rows_g × n.
[[nodiscard]] double grouped_kernel_padding(const std::vector<std::int64_t>& group_rows, std::int64_t n);

enum class GroupedPairKind { kSharedWeights, kSharedRows };

/// Block 0's tile of a pair; block r's is (row_block + r, col_block) for kSharedWeights and (row_block, col_block +
/// r) for kSharedRows.
struct GroupedPair {
  int group = 0, row_block = 0, col_block = 0;
  GroupedPairKind kind = GroupedPairKind::kSharedWeights;
};

/// Pairs per group of `rows` rows at `col_blocks` column blocks.
constexpr int grouped_pairs_of_group(int rows, int col_blocks) {
  const int row_blocks = (rows + kGroupedTileRows - 1) / kGroupedTileRows;
  return row_blocks / 2 * col_blocks + (row_blocks % 2) * ((col_blocks + 1) / 2);
}

/// Pair `pair` (< the schedule's pairs) of `schedule`'s table: a binary search for the last group whose first pair is
/// at most `pair`, then the pair's place in the group's order (the header says which).
constexpr GroupedPair decode_grouped_pair(const int* table, int groups, int col_blocks, int pair) {
  int lo = 0, hi = groups - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[2 * mid + 1] <= pair) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int row_blocks = (table[2 * lo] + kGroupedTileRows - 1) / kGroupedTileRows;
  const int row_pairs = row_blocks / 2;
  const int local = pair - table[2 * lo + 1];
  if (row_blocks % 2 == 0) {
    return {lo, 2 * (local % row_pairs), local / row_pairs, GroupedPairKind::kSharedWeights};
  }
  // Odd row blocks: runs of 2 · row_pairs + 1 pairs per column pair (its two column blocks' shared-weight pairs, then
  // their kSharedRows pair); an odd last column block's run is its row_pairs shared-weight pairs and the zero partner.
  const int run = 2 * row_pairs + 1;
  const int col_pair = local / run, in_run = local % run;
  const int col_block = 2 * col_pair + (in_run < 2 * row_pairs ? in_run / row_pairs : 0);
  if (in_run < 2 * row_pairs && (col_block < col_blocks - 1 || col_blocks % 2 == 0 || in_run < row_pairs)) {
    return {lo, 2 * (in_run % row_pairs), col_block, GroupedPairKind::kSharedWeights};
  }
  if (2 * col_pair + 1 < col_blocks) return {lo, row_blocks - 1, 2 * col_pair, GroupedPairKind::kSharedRows};
  return {lo, row_blocks - 1, col_blocks - 1, GroupedPairKind::kSharedWeights};  // the partner is past the group
}

}  // namespace paratwin::cuda_plan
