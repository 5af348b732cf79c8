#pragma once
/// The tile schedule of the backend's persistent grouped GEMM kernel (backend/cuda/grouped_gemm_kernel.cu). Each
/// non-empty group's output Y_g [rows_g × n] is cut into tiles of kGroupedTileRows × kGroupedTileCols; the last row
/// block of a group is partial (its rows past rows_g are never stored), and the kernel computes one of at most
/// kGroupedHalfTileRows rows as that many rows only. Tiles are numbered group by group, within a
/// group column block by column block, and within a column block row block by row block: the tiles that run at the
/// same time on neighbouring multiprocessors then share one weight column block, read from memory once and from L2
/// after. Plain C++ (no CUDA header), so the CPU tests check it; the kernel decodes tiles with the same constexpr
/// function (nvcc's --expt-relaxed-constexpr).

#include <cstdint>
#include <vector>

namespace paratwin::cuda_plan {

inline constexpr int kGroupedTileRows = 128;  ///< two consumer warpgroups × 64 rows
inline constexpr int kGroupedTileCols = 256;  ///< one wgmma m64n256 per warpgroup and k step
inline constexpr int kGroupedTileDepth = 64;  ///< k per pipeline stage: one 128-byte swizzle row of bf16
inline constexpr int kGroupedHalfTileRows = 64;  ///< a remainder this short runs as one wgmma row block

/// Whether the kernel computes an n × k problem: whole column blocks and whole k stages, sizes in int range.
[[nodiscard]] bool grouped_kernel_supports(std::int64_t n, std::int64_t k);

/// `table` holds 2 ints per group given: {rows, first tile}; `tiles` the total. Groups must be non-empty.
struct GroupedTileSchedule {
  std::vector<int> table;
  int groups = 0;
  int tiles = 0;
};

/// The schedule of the non-empty groups `group_rows` at width n (grouped_kernel_supports(n, any k) must hold).
[[nodiscard]] GroupedTileSchedule make_grouped_tile_schedule(const std::vector<std::int64_t>& group_rows,
                                                             std::int64_t n);

/// The rows the kernel's tensor cores compute for groups of `group_rows` rows (each group's row blocks of 128, its
/// remainder as 64 rows when it has at most 64): over the groups' own rows, the padding the tiles cost.
[[nodiscard]] std::int64_t grouped_kernel_rows_computed(const std::vector<std::int64_t>& group_rows);

struct GroupedTile {
  int group = 0, row_block = 0, col_block = 0;
};

/// Tile `tile` (< the schedule's tiles) of `schedule`'s table: a binary search for the last group whose first tile is
/// at most `tile`.
constexpr GroupedTile decode_grouped_tile(const int* table, int groups, int tile) {
  int lo = 0, hi = groups - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[2 * mid + 1] <= tile) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int row_blocks = (table[2 * lo] + kGroupedTileRows - 1) / kGroupedTileRows;
  const int local = tile - table[2 * lo + 1];
  return {lo, local % row_blocks, local / row_blocks};
}

}  // namespace paratwin::cuda_plan
