// The invariant checker must reject broken layouts, including the one the first draft of PR #17213 would build.
#include <catch2/catch.hpp>

#include "tests/topology/layout_test_util.hpp"
#include "topology/layout_invariants.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

bool mentions(const std::vector<std::string>& violations, const std::string& text) {
  for (const auto& v : violations) {
    if (v.find(text) != std::string::npos) return true;
  }
  return false;
}

// Checks that `table`, a corruption of `c`'s groups, has violations and that one of them mentions `text`.
void check_rejected(const ParallelConfig& c, const GroupTable& table, const std::string& text) {
  const auto violations = layout_violations(c, table);
  REQUIRE_FALSE(violations.empty());
  CHECK(mentions(violations, text));
}

void set_groups(GroupTable& table, GroupFamily family, const std::vector<std::vector<int>>& lists) {
  auto& groups = table.of(family);
  groups.clear();
  for (std::size_t i = 0; i < lists.size(); ++i) groups.push_back({family, static_cast<int>(i), lists[i]});
}

}  // namespace

TEST_CASE("a built layout has no violations", "[invariants]") {
  const auto c = make_config(8, 2, 1, false, 2, 4, 2);
  CHECK(layout_violations(c, build_group_table(c)).empty());
}

TEST_CASE("MoE-CP groups running into the next pipeline stage are rejected", "[invariants]") {
  // world 16, tp 8, pp 2, ep 4, moe_dp 2. A draft that strides the MoE-DP ("MoE-CP") group over the whole world by
  // tp builds {c, c + 8}: each list runs from stage 0 into stage 1.
  const auto c = make_config(8, 2, 1, false, 1, 4, 2);
  auto table = build_group_table(c);
  std::vector<std::vector<int>> draft;
  for (int base = 0; base < 16; base += 16) {
    for (int col = 0; col < 8; ++col) draft.push_back({base + col, base + col + 8});
  }
  set_groups(table, GroupFamily::kMoeDp, draft);
  check_rejected(c, table, "spans PP stages 0 and 1");
}

TEST_CASE("an ATTN_CP group with two ranks swapped is rejected", "[invariants]") {
  const auto c = make_config(8, 1, 1, false, 4);  // attn_tp 2: attn_cp [0,2,4,6] [1,3,5,7]
  auto table = build_group_table(c);
  std::swap(table.of(GroupFamily::kAttnCp)[0].ranks[1], table.of(GroupFamily::kAttnCp)[0].ranks[2]);
  check_rejected(c, table, "SGLang's formula");
}

TEST_CASE("a rank exchanged between two ATTN_CP groups breaks orthogonality", "[invariants]") {
  const auto c = make_config(8, 1, 1, false, 4);
  auto table = build_group_table(c);
  // [0,2,4,6] [1,3,5,7] -> [0,1,4,6] [2,3,5,7]: each new group meets the attention-TP group [0,1] or [2,3] twice.
  std::swap(table.of(GroupFamily::kAttnCp)[0].ranks[1], table.of(GroupFamily::kAttnCp)[1].ranks[0]);
  check_rejected(c, table, "not orthogonal");
}

TEST_CASE("a rank missing from a family is a partition violation", "[invariants]") {
  const auto c = make_config(4, 1, 1, false, 2);
  auto table = build_group_table(c);
  table.of(GroupFamily::kAttnTp)[1].ranks = {2, 2};
  check_rejected(c, table, "rank 3 is in 0 attn_tp groups");
}

TEST_CASE("a PP group out of stage order is rejected", "[invariants]") {
  const auto c = make_config(2, 2);
  auto table = build_group_table(c);
  table.of(GroupFamily::kPp)[0].ranks = {2, 0};
  CHECK(mentions(layout_violations(c, table), "one rank of each PP stage"));
}
