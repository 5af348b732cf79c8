#pragma once
/// The tile schedule of the backend's persistent grouped GEMM kernel (backend/cuda/grouped_gemm_kernel.cu). Each
/// non-empty group's output Y_g [rows_g × n] is cut into tiles of kGroupedTileRows × kGroupedTileCols; the last row
/// block of a group is partial (its rows past rows_g are never stored), and the kernel computes one of at most
/// kGroupedHalfTileRows rows as that many rows only.
///
/// The kernel runs as clusters of kGroupedClusterBlocks (4) blocks that share operands through the copy engine's
/// multicast, so its unit of work is a unit of up to 4 tiles of one group, one per block (rank r of the cluster):
/// - kQuad (2 × 2): row blocks 2p, 2p + 1 × column blocks 2q, 2q + 1; block r takes row block 2p + r % 2 and column
///   block 2q + r / 2. The two blocks of a row block share its X tile, the two of a column block its W tile.
/// - kRowOfFour (1 × 4): where a group has an odd number of row blocks, its last row block's column blocks 4t .. 4t
///   + 3; block r takes column block 4t + r, and the four share the X tile.
/// Where the column blocks are not a multiple of 4 (never in the zoo: n / 256 is 12, 16 or 28 there), a unit's tiles
/// past the last column block are empty: their block loads its share of the unit's multicast operands and walks the
/// ring without math (a kQuad with an empty column is the two-block clusters' shared-weights pair, a kRowOfFour with
/// two or one tile their shared-rows pair or a lone tile, with the other blocks idle).
/// Order within a group: column pair by column pair, each column pair's kQuad units in row order; where the row blocks
/// are odd in number, each column quad (4t .. 4t + 3)'s kRowOfFour unit right after the kQuad units of its two column
/// pairs. The persistent clusters take consecutive units at the same time, so every unit that reads one W column block
/// runs beside the others that read it, and that W comes from device memory once, then from L2.
/// Plain C++ (no CUDA header), so the CPU tests check it; the kernel decodes units with the same constexpr functions
/// (nvcc's --expt-relaxed-constexpr).

#include <cstdint>
#include <vector>

namespace paratwin::cuda_plan {

inline constexpr int kGroupedTileRows = 128;     ///< two consumer warpgroups × 64 rows
inline constexpr int kGroupedTileCols = 256;     ///< one wgmma m64n256 per warpgroup and k step
inline constexpr int kGroupedTileDepth = 64;     ///< k per pipeline stage: one 128-byte swizzle row of bf16
inline constexpr int kGroupedHalfTileRows = 64;  ///< a remainder this short runs as one wgmma row block
inline constexpr int kGroupedClusterBlocks = 4;  ///< blocks per cluster: tiles per unit

/// Whether the kernel computes an n × k problem: whole column blocks and whole k stages, sizes in int range.
[[nodiscard]] bool grouped_kernel_supports(std::int64_t n, std::int64_t k);

/// `table` holds 2 ints per group given: {rows, first unit}; `units` the total. Groups must be non-empty.
struct GroupedTileSchedule {
  std::vector<int> table;
  int groups = 0;
  int units = 0;
};

/// The schedule of the non-empty groups `group_rows` at width n (grouped_kernel_supports(n, any k) must hold).
[[nodiscard]] GroupedTileSchedule make_grouped_tile_schedule(const std::vector<std::int64_t>& group_rows,
                                                             std::int64_t n);

/// The tensor cores' work over the useful work: rows × columns the kernel computes (whole row blocks of 128, a
/// remainder of at most 64 as 64; empty tiles compute nothing) over Σ rows_g × n.
[[nodiscard]] double grouped_kernel_padding(const std::vector<std::int64_t>& group_rows, std::int64_t n);

enum class GroupedUnitKind { kQuad, kRowOfFour };

/// A unit's first tile (block 0's): row block `row_block`, column block `col_block` of group `group`.
struct GroupedUnit {
  int group = 0, row_block = 0, col_block = 0;
  GroupedUnitKind kind = GroupedUnitKind::kQuad;
};

/// The tile of cluster block `rank` (< kGroupedClusterBlocks) in `unit`; its column block may lie past the group's
/// last (an empty tile: the header says when).
struct GroupedTile {
  int row_block = 0, col_block = 0;
};
constexpr GroupedTile grouped_unit_tile(const GroupedUnit& unit, int rank) {
  if (unit.kind == GroupedUnitKind::kQuad) return {unit.row_block + rank % 2, unit.col_block + rank / 2};
  return {unit.row_block, unit.col_block + rank};
}

/// Units per group of `rows` rows at `col_blocks` column blocks.
constexpr int grouped_units_of_group(int rows, int col_blocks) {
  const int row_blocks = (rows + kGroupedTileRows - 1) / kGroupedTileRows;
  const int col_pairs = (col_blocks + 1) / 2, col_quads = (col_blocks + 3) / 4;
  return row_blocks / 2 * col_pairs + (row_blocks % 2) * col_quads;
}

/// Unit `unit` (< the schedule's units) of `schedule`'s table: a binary search for the last group whose first unit is
/// at most `unit`, then the unit's place in the group's order (the header says which).
constexpr GroupedUnit decode_grouped_unit(const int* table, int groups, int col_blocks, int unit) {
  int lo = 0, hi = groups - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[2 * mid + 1] <= unit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int row_blocks = (table[2 * lo] + kGroupedTileRows - 1) / kGroupedTileRows;
  const int row_pairs = row_blocks / 2;
  const int local = unit - table[2 * lo + 1];
  if (row_blocks % 2 == 0) {
    return {lo, 2 * (local % row_pairs), 2 * (local / row_pairs), GroupedUnitKind::kQuad};
  }
  // Odd row blocks: runs of 2 · row_pairs + 1 units per column quad (the kQuad units of its two column pairs, then its
  // kRowOfFour unit); a last column quad of one column pair runs row_pairs + 1.
  const int run = 2 * row_pairs + 1;
  const int col_quad = local / run, in_run = local % run;
  const int col_pairs = (col_blocks + 1) / 2;
  const int quads_in_run = (col_pairs - 2 * col_quad < 2 ? 1 : 2) * row_pairs;
  if (in_run < quads_in_run) {
    return {lo, 2 * (in_run % row_pairs), 2 * (2 * col_quad + in_run / row_pairs), GroupedUnitKind::kQuad};
  }
  return {lo, row_blocks - 1, 4 * col_quad, GroupedUnitKind::kRowOfFour};
}

}  // namespace paratwin::cuda_plan
