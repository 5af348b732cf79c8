// The persistent grouped GEMM kernel's tile schedule (grouped_gemm_tiles.hpp): which n × k it computes, that decoding
// every pair number covers each group's row blocks × column blocks exactly once (the two blocks of a cluster taking
// the pair's two tiles), in the order that keeps every pair reading one weight column block among neighbouring pairs,
// and the padding the tiles cost.
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

// Every tile of every group once: the pairs' tiles, less the zero partners past a group's end.
void check_cover(const std::vector<std::int64_t>& rows, std::int64_t n) {
  const int col_blocks = static_cast<int>(n / 256);
  const auto s = make_grouped_tile_schedule(rows, n);
  REQUIRE(s.groups == static_cast<int>(rows.size()));
  std::set<std::tuple<int, int, int>> seen;
  int expected_tiles = 0, zero_partners = 0;
  for (const auto r : rows) expected_tiles += static_cast<int>((r + 127) / 128) * col_blocks;
  GroupedPair previous{};
  for (int p = 0; p < s.pairs; ++p) {
    const GroupedPair pair = decode_grouped_pair(s.table.data(), s.groups, col_blocks, p);
    REQUIRE(pair.group >= 0);
    REQUIRE(pair.group < s.groups);
    const auto group_rows = rows[static_cast<std::size_t>(pair.group)];
    for (int r = 0; r < 2; ++r) {
      const bool shared_weights = pair.kind == GroupedPairKind::kSharedWeights;
      const int row_block = pair.row_block + (shared_weights ? r : 0);
      const int col_block = pair.col_block + (shared_weights ? 0 : r);
      REQUIRE(col_block < col_blocks);
      if (row_block * 128 >= group_rows) {  // only the second tile of a pair, only where rows and columns are odd
        CHECK(r == 1);
        CHECK(shared_weights);
        CHECK(col_block == col_blocks - 1);
        ++zero_partners;
        continue;
      }
      CHECK(seen.insert({pair.group, row_block, col_block}).second);
    }
    if (p > 0) {  // groups in order; a group's shared-weight pairs column block by column block, rows in order
      CHECK(pair.group >= previous.group);
      if (pair.group == previous.group && pair.kind == GroupedPairKind::kSharedWeights &&
          previous.kind == GroupedPairKind::kSharedWeights) {
        CHECK((pair.col_block == previous.col_block ? pair.row_block == previous.row_block + 2
                                                    : pair.col_block == previous.col_block + 1 && pair.row_block == 0));
      }
    }
    previous = pair;
  }
  CHECK(static_cast<int>(seen.size()) == expected_tiles);
  int odd_groups = 0;
  for (const auto r : rows) odd_groups += ((r + 127) / 128) % 2 == 1 && col_blocks % 2 == 1 ? 1 : 0;
  CHECK(zero_partners == odd_groups);
}

// Every pair that reads a group's W column block c (its shared-weight pairs of c, and the shared-rows pair or zero
// partner of c's last row block) lies within the group's pairs of column pair c / 2: no more than 2 · row_pairs + 1
// consecutive pairs apart, so that they run at the same time on the persistent clusters (the header says why).
void check_weight_locality(const std::vector<std::int64_t>& rows, std::int64_t n) {
  const int col_blocks = static_cast<int>(n / 256);
  const auto s = make_grouped_tile_schedule(rows, n);
  std::map<std::pair<int, int>, std::pair<int, int>> first_last;  // (group, column block) -> first and last pair
  for (int p = 0; p < s.pairs; ++p) {
    const GroupedPair pair = decode_grouped_pair(s.table.data(), s.groups, col_blocks, p);
    const int columns = pair.kind == GroupedPairKind::kSharedRows ? 2 : 1;
    for (int c = pair.col_block; c < pair.col_block + columns; ++c) {
      auto [it, fresh] = first_last.try_emplace({pair.group, c}, p, p);
      if (!fresh) it->second.second = p;
    }
  }
  for (const auto& [key, span] : first_last) {
    const int row_pairs = static_cast<int>((rows[static_cast<std::size_t>(key.first)] + 127) / 128) / 2;
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

TEST_CASE("grouped kernel tile pairs cover every group's output once", "[backend]") {
  const std::vector<std::int64_t> rows{1, 128, 129, 300, 64, 1000, 255, 256, 257, 384};
  SECTION("odd column blocks: unpaired last tiles get a zero partner") {
    check_cover(rows, 768);
  }
  SECTION("even column blocks: odd row blocks pair along the columns") {
    check_cover(rows, 1024);
  }
  SECTION("one column block") {
    check_cover(rows, 256);
  }
}

TEST_CASE("grouped kernel pairs that read one weight column block are scheduled together", "[backend]") {
  const std::vector<std::int64_t> rows{1, 128, 129, 300, 64, 1000, 255, 256, 257, 384, 640, 2048};
  check_weight_locality(rows, 768);
  check_weight_locality(rows, 1024);
  check_weight_locality(rows, 256);
  check_weight_locality(rows, 4096);
  check_cover(rows, 4096);
  check_cover(rows, 7168);
}

TEST_CASE("grouped kernel order of a group of 3 row blocks: each column pair's shared-rows pair after its columns",
          "[backend]") {
  using K = GroupedPairKind;
  struct Expected {
    int row_block, col_block;
    K kind;
  };
  const auto decoded = [](std::int64_t rows, int col_blocks) {
    const auto s = make_grouped_tile_schedule({rows}, std::int64_t{256} * col_blocks);
    std::vector<Expected> out;
    for (int p = 0; p < s.pairs; ++p) {
      const GroupedPair pair = decode_grouped_pair(s.table.data(), 1, col_blocks, p);
      out.push_back({pair.row_block, pair.col_block, pair.kind});
    }
    return out;
  };
  const auto same = [](const std::vector<Expected>& got, const std::vector<Expected>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("pair " << i);
      CHECK(got[i].row_block == want[i].row_block);
      CHECK(got[i].col_block == want[i].col_block);
      CHECK(got[i].kind == want[i].kind);
    }
  };
  SECTION("4 column blocks") {
    same(decoded(300, 4), {{0, 0, K::kSharedWeights},
                           {0, 1, K::kSharedWeights},
                           {2, 0, K::kSharedRows},
                           {0, 2, K::kSharedWeights},
                           {0, 3, K::kSharedWeights},
                           {2, 2, K::kSharedRows}});
  }
  SECTION("3 column blocks: the last one's zero partner after its shared-weight pair") {
    same(decoded(300, 3), {{0, 0, K::kSharedWeights},
                           {0, 1, K::kSharedWeights},
                           {2, 0, K::kSharedRows},
                           {0, 2, K::kSharedWeights},
                           {2, 2, K::kSharedWeights}});
  }
  SECTION("5 row blocks, 2 column blocks") {
    same(decoded(600, 2), {{0, 0, K::kSharedWeights},
                           {2, 0, K::kSharedWeights},
                           {0, 1, K::kSharedWeights},
                           {2, 1, K::kSharedWeights},
                           {4, 0, K::kSharedRows}});
  }
  SECTION("even row blocks: column block by column block") {
    same(decoded(512, 2),
         {{0, 0, K::kSharedWeights}, {2, 0, K::kSharedWeights}, {0, 1, K::kSharedWeights}, {2, 1, K::kSharedWeights}});
  }
}

TEST_CASE("grouped kernel schedule of one group and of none", "[backend]") {
  const auto one = make_grouped_tile_schedule({1}, 256);
  CHECK(one.pairs == 1);
  CHECK(one.table == std::vector<int>{1, 0});
  const GroupedPair p = decode_grouped_pair(one.table.data(), 1, 1, 0);
  CHECK(p.group == 0);
  CHECK(p.row_block == 0);
  CHECK(p.col_block == 0);
  CHECK(p.kind == GroupedPairKind::kSharedWeights);
  const auto two_cols = make_grouped_tile_schedule({1}, 512);
  CHECK(two_cols.pairs == 1);
  CHECK(decode_grouped_pair(two_cols.table.data(), 1, 2, 0).kind == GroupedPairKind::kSharedRows);
  const auto none = make_grouped_tile_schedule({}, 512);
  CHECK(none.pairs == 0);
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
  CHECK(grouped_kernel_padding({128}, 256) == Approx(192.0 / 128));  // one row block, one column: a zero partner
}
