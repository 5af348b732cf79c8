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

GroupedTileSchedule make_grouped_tile_schedule(const std::vector<std::int64_t>& group_rows, std::int64_t n) {
  PARATWIN_ASSERT(n >= kGroupedTileCols && n % kGroupedTileCols == 0 && n <= kIntMax, "grouped kernel schedule at n {}",
                  n);
  const auto col_blocks = static_cast<int>(n / kGroupedTileCols);
  GroupedTileSchedule s;
  std::int64_t pairs = 0;
  for (const std::int64_t rows : group_rows) {
    PARATWIN_ASSERT(rows >= 1 && rows <= kIntMax - kGroupedTileRows, "grouped kernel group of {} rows", rows);
    s.table.push_back(static_cast<int>(rows));
    s.table.push_back(static_cast<int>(pairs));
    pairs += grouped_pairs_of_group(static_cast<int>(rows), col_blocks);
    PARATWIN_ASSERT(pairs <= kIntMax, "grouped kernel schedule of {} tile pairs", pairs);
  }
  s.groups = static_cast<int>(group_rows.size());
  s.pairs = static_cast<int>(pairs);
  return s;
}

double grouped_kernel_padding(const std::vector<std::int64_t>& group_rows, std::int64_t n) {
  PARATWIN_ASSERT(n >= kGroupedTileCols && n % kGroupedTileCols == 0, "grouped kernel padding at n {}", n);
  const std::int64_t col_blocks = n / kGroupedTileCols;
  double computed = 0, useful = 0;  // in rows × column blocks
  for (const std::int64_t rows : group_rows) {
    if (rows == 0) continue;
    const std::int64_t remainder = rows % kGroupedTileRows;
    double row_blocks_computed = static_cast<double>(rows - remainder) * static_cast<double>(col_blocks);
    if (remainder > 0) {
      const int last = remainder <= kGroupedHalfTileRows ? kGroupedHalfTileRows : kGroupedTileRows;
      row_blocks_computed += static_cast<double>(last) * static_cast<double>(col_blocks);
    }
    const std::int64_t row_blocks = (rows + kGroupedTileRows - 1) / kGroupedTileRows;
    if (row_blocks % 2 == 1 && col_blocks % 2 == 1) row_blocks_computed += kGroupedHalfTileRows;  // the zero partner
    computed += row_blocks_computed;
    useful += static_cast<double>(rows) * static_cast<double>(col_blocks);
  }
  return useful > 0 ? computed / useful : 1.0;
}

}  // namespace paratwin::cuda_plan
