#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

#include <limits>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {

namespace {
constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
}  // namespace

bool grouped_kernel_supports(std::int64_t n, std::int64_t k) {
  return n >= kGroupedTileCols && k >= kGroupedTileDepth && n % kGroupedTileCols == 0 && k % kGroupedTileDepth == 0 &&
         n <= kIntMax && k <= kIntMax;
}

std::int64_t grouped_kernel_rows_computed(const std::vector<std::int64_t>& group_rows) {
  std::int64_t computed = 0;
  for (const std::int64_t rows : group_rows) {
    const std::int64_t remainder = rows % kGroupedTileRows;
    computed += rows - remainder;
    if (remainder > 0) computed += remainder <= kGroupedHalfTileRows ? kGroupedHalfTileRows : kGroupedTileRows;
  }
  return computed;
}

GroupedTileSchedule make_grouped_tile_schedule(const std::vector<std::int64_t>& group_rows, std::int64_t n) {
  PARATWIN_ASSERT(n >= kGroupedTileCols && n % kGroupedTileCols == 0, "grouped kernel schedule at n {}", n);
  const std::int64_t col_blocks = n / kGroupedTileCols;
  GroupedTileSchedule s;
  std::int64_t tiles = 0;
  for (const std::int64_t rows : group_rows) {
    PARATWIN_ASSERT(rows >= 1 && rows <= kIntMax, "grouped kernel group of {} rows", rows);
    s.table.push_back(static_cast<int>(rows));
    s.table.push_back(static_cast<int>(tiles));
    tiles += (rows + kGroupedTileRows - 1) / kGroupedTileRows * col_blocks;
    PARATWIN_ASSERT(tiles <= kIntMax, "grouped kernel schedule of {} tiles", tiles);
  }
  s.groups = static_cast<int>(group_rows.size());
  s.tiles = static_cast<int>(tiles);
  return s;
}

}  // namespace paratwin::cuda_plan
