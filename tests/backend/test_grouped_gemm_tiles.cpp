// The persistent grouped GEMM kernel's tile schedule (grouped_gemm_tiles.hpp): which n × k it computes, that decoding
// every unit number covers each group's row blocks × column blocks exactly once (the four blocks of a cluster taking
// the unit's tiles, the tiles past the last column block empty), in the order that keeps every unit reading one weight
// column block among neighbouring units, and the padding the tiles cost.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cuda_plan/grouped_gemm_tiles.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::cuda_plan;

namespace {

int row_blocks_of(std::int64_t rows) {
  return static_cast<int>((rows + 127) / 128);
}

// Every tile of every group once: the units' tiles, less the empty ones past the last column block; every unit of
// its kind's shape (kQuad at an even row and column block, kRowOfFour on the last of an odd number of row blocks at a
// multiple of 4 columns).
void check_cover(const std::vector<std::int64_t>& rows, std::int64_t n) {
  const int col_blocks = static_cast<int>(n / 256);
  const auto s = make_grouped_tile_schedule(rows, n);
  REQUIRE(s.groups == static_cast<int>(rows.size()));
  std::set<std::tuple<int, int, int>> seen;
  int expected_tiles = 0, expected_empty = 0, empty = 0;
  for (const auto r : rows) {
    const int row_blocks = row_blocks_of(r);
    expected_tiles += row_blocks * col_blocks;
    expected_empty += row_blocks / 2 * (2 * ((col_blocks + 1) / 2) - col_blocks) * 2 +
                      row_blocks % 2 * (4 * ((col_blocks + 3) / 4) - col_blocks);
  }
  GroupedUnit previous{};
  for (int u = 0; u < s.units; ++u) {
    const GroupedUnit unit = decode_grouped_unit(s.table.data(), s.groups, col_blocks, u);
    REQUIRE(unit.group >= 0);
    REQUIRE(unit.group < s.groups);
    const int row_blocks = row_blocks_of(rows[static_cast<std::size_t>(unit.group)]);
    if (unit.kind == GroupedUnitKind::kQuad) {
      CHECK(unit.row_block % 2 == 0);
      CHECK(unit.col_block % 2 == 0);
    } else {
      CHECK(row_blocks % 2 == 1);
      CHECK(unit.row_block == row_blocks - 1);
      CHECK(unit.col_block % 4 == 0);
    }
    for (int r = 0; r < kGroupedClusterBlocks; ++r) {
      const GroupedTile tile = grouped_unit_tile(unit, r);
      REQUIRE(tile.row_block < row_blocks);
      if (tile.col_block >= col_blocks) {  // an empty tile, only where the column blocks are not a multiple of 4
        ++empty;
        continue;
      }
      CHECK(seen.insert({unit.group, tile.row_block, tile.col_block}).second);
    }
    if (u > 0) {  // groups in order; a group's kQuad units column pair by column pair, rows in order
      CHECK(unit.group >= previous.group);
      if (unit.group == previous.group && unit.kind == GroupedUnitKind::kQuad &&
          previous.kind == GroupedUnitKind::kQuad) {
        CHECK((unit.col_block == previous.col_block ? unit.row_block == previous.row_block + 2
                                                    : unit.col_block == previous.col_block + 2 && unit.row_block == 0));
      }
    }
    previous = unit;
  }
  CHECK(static_cast<int>(seen.size()) == expected_tiles);
  CHECK(empty == expected_empty);
}

// Every unit that reads a group's W column block c (its kQuad units of c's column pair, and the kRowOfFour unit of c's
// last row block) lies within the group's units of column quad c / 4: no more than 2 · row_pairs + 1 consecutive
// units apart, so that they run at the same time on the persistent clusters (the header says why).
void check_weight_locality(const std::vector<std::int64_t>& rows, std::int64_t n) {
  const int col_blocks = static_cast<int>(n / 256);
  const auto s = make_grouped_tile_schedule(rows, n);
  std::map<std::pair<int, int>, std::pair<int, int>> first_last;  // (group, column block) -> first and last unit
  for (int u = 0; u < s.units; ++u) {
    const GroupedUnit unit = decode_grouped_unit(s.table.data(), s.groups, col_blocks, u);
    for (int r = 0; r < kGroupedClusterBlocks; ++r) {
      const int c = grouped_unit_tile(unit, r).col_block;
      if (c >= col_blocks) continue;
      auto [it, fresh] = first_last.try_emplace({unit.group, c}, u, u);
      if (!fresh) it->second.second = u;
    }
  }
  for (const auto& [key, span] : first_last) {
    const int row_pairs = row_blocks_of(rows[static_cast<std::size_t>(key.first)]) / 2;
    CHECK(span.second - span.first <= 2 * row_pairs);
  }
}

}  // namespace

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

TEST_CASE("grouped kernel tile units cover every group's output once", "[backend]") {
  const std::vector<std::int64_t> rows{1, 128, 129, 300, 64, 1000, 255, 256, 257, 384};
  SECTION("column blocks a multiple of 4: no empty tile") {
    check_cover(rows, 1024);
    check_cover(rows, 2048);
  }
  SECTION("odd column blocks: the last column pair's and quad's tiles past n are empty") {
    check_cover(rows, 768);
    check_cover(rows, 1280);
  }
  SECTION("even column blocks, not a multiple of 4: the last row block's last unit has two empty tiles") {
    check_cover(rows, 512);
    check_cover(rows, 1536);
  }
  SECTION("one column block") {
    check_cover(rows, 256);
  }
}

TEST_CASE("grouped kernel units that read one weight column block are scheduled together", "[backend]") {
  const std::vector<std::int64_t> rows{1, 128, 129, 300, 64, 1000, 255, 256, 257, 384, 640, 2048};
  for (const std::int64_t n : {256, 512, 768, 1024, 1536, 3072, 4096, 7168}) {
    INFO("n " << n);
    check_weight_locality(rows, n);
    check_cover(rows, n);
  }
}

TEST_CASE("grouped kernel order of a group of 3 row blocks: each column quad's row of four after its quads",
          "[backend]") {
  using K = GroupedUnitKind;
  struct Expected {
    int row_block, col_block;
    K kind;
  };
  const auto decoded = [](std::int64_t rows, int col_blocks) {
    const auto s = make_grouped_tile_schedule({rows}, std::int64_t{256} * col_blocks);
    std::vector<Expected> out;
    for (int u = 0; u < s.units; ++u) {
      const GroupedUnit unit = decode_grouped_unit(s.table.data(), 1, col_blocks, u);
      out.push_back({unit.row_block, unit.col_block, unit.kind});
    }
    return out;
  };
  const auto same = [](const std::vector<Expected>& got, const std::vector<Expected>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("unit " << i);
      CHECK(got[i].row_block == want[i].row_block);
      CHECK(got[i].col_block == want[i].col_block);
      CHECK(got[i].kind == want[i].kind);
    }
  };
  SECTION("8 column blocks") {
    same(decoded(300, 8), {{0, 0, K::kQuad},
                           {0, 2, K::kQuad},
                           {2, 0, K::kRowOfFour},
                           {0, 4, K::kQuad},
                           {0, 6, K::kQuad},
                           {2, 4, K::kRowOfFour}});
  }
  SECTION("6 column blocks: the last column quad has one column pair") {
    same(decoded(300, 6),
         {{0, 0, K::kQuad}, {0, 2, K::kQuad}, {2, 0, K::kRowOfFour}, {0, 4, K::kQuad}, {2, 4, K::kRowOfFour}});
  }
  SECTION("3 column blocks: the last quad's and row's fourth column empty") {
    same(decoded(300, 3), {{0, 0, K::kQuad}, {0, 2, K::kQuad}, {2, 0, K::kRowOfFour}});
  }
  SECTION("5 row blocks, 4 column blocks") {
    same(decoded(600, 4),
         {{0, 0, K::kQuad}, {2, 0, K::kQuad}, {0, 2, K::kQuad}, {2, 2, K::kQuad}, {4, 0, K::kRowOfFour}});
  }
  SECTION("even row blocks: column pair by column pair") {
    same(decoded(512, 4), {{0, 0, K::kQuad}, {2, 0, K::kQuad}, {0, 2, K::kQuad}, {2, 2, K::kQuad}});
  }
}

TEST_CASE("grouped kernel schedule of one group and of none", "[backend]") {
  const auto one = make_grouped_tile_schedule({1}, 256);
  CHECK(one.units == 1);
  CHECK(one.table == std::vector<int>{1, 0});
  const GroupedUnit u = decode_grouped_unit(one.table.data(), 1, 1, 0);
  CHECK(u.group == 0);
  CHECK(u.row_block == 0);
  CHECK(u.col_block == 0);
  CHECK(u.kind == GroupedUnitKind::kRowOfFour);
  const GroupedTile third = grouped_unit_tile(u, 2);
  CHECK(third.row_block == 0);
  CHECK(third.col_block == 2);
  const auto two_rows = make_grouped_tile_schedule({256}, 256);  // one 2 × 2 quad, its second column empty
  CHECK(two_rows.units == 1);
  const GroupedUnit q = decode_grouped_unit(two_rows.table.data(), 1, 1, 0);
  CHECK(q.kind == GroupedUnitKind::kQuad);
  CHECK(grouped_unit_tile(q, 1).row_block == 1);
  CHECK(grouped_unit_tile(q, 1).col_block == 0);
  CHECK(grouped_unit_tile(q, 2).row_block == 0);
  CHECK(grouped_unit_tile(q, 2).col_block == 1);
  const auto none = make_grouped_tile_schedule({}, 512);
  CHECK(none.units == 0);
  CHECK(none.groups == 0);
  CHECK_THROWS_AS(make_grouped_tile_schedule({0}, 256), InternalError);
  CHECK_THROWS_AS(make_grouped_tile_schedule({5}, 200), InternalError);
}

TEST_CASE("grouped kernel padding: whole 128-row blocks, remainders of up to 64 rows as 64", "[backend]") {
  CHECK(grouped_kernel_padding({}, 512) == 1.0);
  CHECK(grouped_kernel_padding({0, 128}, 512) == 1.0);
  CHECK(grouped_kernel_padding({64}, 512) == 1.0);
  CHECK(grouped_kernel_padding({1}, 512) == 64.0);
  CHECK(grouped_kernel_padding({65}, 512) == Approx(128.0 / 65));
  CHECK(grouped_kernel_padding({129}, 512) == Approx(192.0 / 129));
  CHECK(grouped_kernel_padding({192, 193, 300}, 512) == Approx((192.0 + 256 + 320) / (192 + 193 + 300)));
  CHECK(grouped_kernel_padding({128}, 256) == 1.0);  // the empty tiles of the unit compute nothing
}
