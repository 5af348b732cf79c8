// The persistent grouped GEMM kernel's tile schedule (grouped_gemm_tiles.hpp): which n × k it computes, and that
// decoding every tile number covers each group's row blocks × column blocks exactly once, in the order that lets
// neighbouring tiles share a weight column block.
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "backend/cuda_plan/grouped_gemm_tiles.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::cuda_plan;

TEST_CASE("grouped kernel takes whole 256-column blocks and whole 64-deep k stages", "[backend]") {
  CHECK(grouped_kernel_supports(4096, 7168));
  CHECK(grouped_kernel_supports(7168, 2048));
  CHECK(grouped_kernel_supports(3072, 4096));
  CHECK(grouped_kernel_supports(256, 64));
  CHECK_FALSE(grouped_kernel_supports(192, 160));
  CHECK_FALSE(grouped_kernel_supports(128, 64));
  CHECK_FALSE(grouped_kernel_supports(4096 + 128, 7168));
  CHECK_FALSE(grouped_kernel_supports(4096, 7168 + 32));
  CHECK_FALSE(grouped_kernel_supports(256, 0));
  CHECK_FALSE(grouped_kernel_supports(std::int64_t{1} << 32, 64));
}

TEST_CASE("grouped kernel tiles cover every group's output once, column block by column block", "[backend]") {
  const std::vector<std::int64_t> rows{1, 128, 129, 300, 64, 1000, 255, 256, 257};
  const std::int64_t n = 768;  // 3 column blocks
  const auto s = make_grouped_tile_schedule(rows, n);
  REQUIRE(s.groups == static_cast<int>(rows.size()));
  int expected_tiles = 0;
  for (const auto r : rows) expected_tiles += static_cast<int>((r + 127) / 128) * 3;
  REQUIRE(s.tiles == expected_tiles);
  std::set<std::tuple<int, int, int>> seen;
  GroupedTile previous{};
  for (int t = 0; t < s.tiles; ++t) {
    const GroupedTile tile = decode_grouped_tile(s.table.data(), s.groups, t);
    REQUIRE(tile.group >= 0);
    REQUIRE(tile.group < s.groups);
    const auto group_rows = rows[static_cast<std::size_t>(tile.group)];
    CHECK(tile.row_block * 128 < group_rows);  // every tile holds at least one row of its group
    CHECK(tile.col_block >= 0);
    CHECK(tile.col_block < 3);
    CHECK(seen.insert({tile.group, tile.row_block, tile.col_block}).second);
    if (t > 0) {  // groups in order; within a group, column blocks in order, row blocks within them
      CHECK(tile.group >= previous.group);
      if (tile.group == previous.group) {
        CHECK((tile.col_block == previous.col_block ? tile.row_block == previous.row_block + 1
                                                    : tile.col_block == previous.col_block + 1 && tile.row_block == 0));
      }
    }
    previous = tile;
  }
  CHECK(static_cast<int>(seen.size()) == s.tiles);
}

TEST_CASE("grouped kernel schedule of one group and of none", "[backend]") {
  const auto one = make_grouped_tile_schedule({1}, 256);
  CHECK(one.tiles == 1);
  CHECK(one.table == std::vector<int>{1, 0});
  const GroupedTile t = decode_grouped_tile(one.table.data(), 1, 0);
  CHECK(t.group == 0);
  CHECK(t.row_block == 0);
  CHECK(t.col_block == 0);
  const auto none = make_grouped_tile_schedule({}, 512);
  CHECK(none.tiles == 0);
  CHECK(none.groups == 0);
  CHECK_THROWS_AS(make_grouped_tile_schedule({0}, 256), InternalError);
  CHECK_THROWS_AS(make_grouped_tile_schedule({5}, 200), InternalError);
}

TEST_CASE("grouped kernel computes whole 128-row blocks and remainders of up to 64 rows as 64", "[backend]") {
  CHECK(grouped_kernel_rows_computed({}) == 0);
  CHECK(grouped_kernel_rows_computed({0}) == 0);
  CHECK(grouped_kernel_rows_computed({1}) == 64);
  CHECK(grouped_kernel_rows_computed({64}) == 64);
  CHECK(grouped_kernel_rows_computed({65}) == 128);
  CHECK(grouped_kernel_rows_computed({128}) == 128);
  CHECK(grouped_kernel_rows_computed({129}) == 192);
  CHECK(grouped_kernel_rows_computed({192, 193, 300}) == 192 + 256 + 320);
}
