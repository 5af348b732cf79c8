// The worked examples of sglang-parallel-state.md §3, computed there by executing SGLang's merged
// initialize_model_parallel with mocked group creation: paratwin must reproduce every rank list exactly.
#include <catch2/catch.hpp>

#include "tests/topology/layout_test_util.hpp"
#include "topology/error.hpp"
#include "topology/rank_layout.hpp"

using namespace paratwin;
using namespace paratwin::test;
using Lists = std::vector<std::vector<int>>;

TEST_CASE("(a) tp 8, attn_cp 8: the DeepSeek-V3.2 round-robin CP layout", "[golden]") {
  const RankLayout layout(make_config(8, 1, 1, false, 8));
  CHECK(rank_lists(layout, GroupFamily::kTp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
  CHECK(layout.aliases_tp(GroupFamily::kAttnCp));
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == singletons(8));
  CHECK_FALSE(layout.aliases_tp(GroupFamily::kAttnTp));
  CHECK(rank_lists(layout, GroupFamily::kMoeTp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
  CHECK(layout.aliases_tp(GroupFamily::kMoeTp));
  CHECK(rank_lists(layout, GroupFamily::kMoeEp) == singletons(8));
  CHECK(rank_lists(layout, GroupFamily::kMoeDp) == singletons(8));
  CHECK(rank_lists(layout, GroupFamily::kPp) == singletons(8));
  for (int r = 0; r < 8; ++r) {
    CHECK(layout.coords(r).attn_cp_rank == r);
    CHECK(layout.coords(r).attn_tp_rank == 0);
    CHECK(layout.coords(r).moe_tp_rank == r);
  }
}

TEST_CASE("(b) tp 8, dp 2 with DP-attention, attn_cp 4: the in-seq-split layout", "[golden]") {
  const RankLayout layout(make_config(8, 1, 2, true, 4));
  CHECK(rank_lists(layout, GroupFamily::kAttnDp) == Lists{{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) == Lists{{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK_FALSE(layout.aliases_tp(GroupFamily::kAttnCp));
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == singletons(8));
  CHECK(rank_lists(layout, GroupFamily::kMoeTp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
  CHECK(layout.coords(5).attn_dp_rank == 1);
  CHECK(layout.coords(5).attn_cp_rank == 1);

  SECTION("the NSA in-seq-split path forces ep 8: moe_ep is the TP group, moe_tp singletons") {
    const RankLayout nsa(make_config(8, 1, 2, true, 4, 8));
    CHECK(rank_lists(nsa, GroupFamily::kMoeEp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
    CHECK(nsa.aliases_tp(GroupFamily::kMoeEp));
    CHECK(rank_lists(nsa, GroupFamily::kMoeTp) == singletons(8));
  }
}

TEST_CASE("(b2) tp 8, dp 2, attn_cp 2: attn_tp 2 and strided CP groups", "[golden]") {
  const RankLayout layout(make_config(8, 1, 2, true, 2));
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == Lists{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) == Lists{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
}

TEST_CASE("(c) tp 8, pp 2, attn_cp 2: groups stay inside each stage", "[golden]") {
  const RankLayout layout(make_config(8, 2, 1, false, 2));
  CHECK(layout.world_size() == 16);
  CHECK(rank_lists(layout, GroupFamily::kTp) == blocks(16, 8));
  CHECK(rank_lists(layout, GroupFamily::kPp) ==
        Lists{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}});
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == blocks(16, 4));
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) ==
        Lists{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}});
  CHECK(rank_lists(layout, GroupFamily::kMoeTp) == blocks(16, 8));
  CHECK(layout.aliases_tp(GroupFamily::kMoeTp));
  CHECK(rank_lists(layout, GroupFamily::kMoeEp) == singletons(16));
  CHECK(rank_lists(layout, GroupFamily::kMoeDp) == singletons(16));
  CHECK(layout.coords(13).pp_rank == 1);
  CHECK(layout.coords(13).attn_cp_rank == 1);
  CHECK(layout.coords(13).attn_tp_rank == 1);
}

TEST_CASE("(c2) tp 8, pp 2, attn_cp 8: CP is the TP group of each stage", "[golden]") {
  const RankLayout layout(make_config(8, 2, 1, false, 8));
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) == blocks(16, 8));
  CHECK(layout.aliases_tp(GroupFamily::kAttnCp));
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == singletons(16));
}

TEST_CASE("(d) MoE factorizations on tp 8", "[golden]") {
  SECTION("d1 ep 8") {
    const RankLayout l(make_config(8, 1, 1, false, 1, 8, 1));
    CHECK(rank_lists(l, GroupFamily::kMoeEp) == Lists{{0, 1, 2, 3, 4, 5, 6, 7}});
    CHECK(l.aliases_tp(GroupFamily::kMoeEp));
    CHECK(rank_lists(l, GroupFamily::kMoeTp) == singletons(8));
    CHECK(rank_lists(l, GroupFamily::kMoeDp) == singletons(8));
  }
  SECTION("d2 ep 4, moe_dp 2 (asserted by the PR's unit test)") {
    const RankLayout l(make_config(8, 1, 1, false, 1, 4, 2));
    CHECK(rank_lists(l, GroupFamily::kMoeEp) == Lists{{0, 1, 2, 3}, {4, 5, 6, 7}});
    CHECK(rank_lists(l, GroupFamily::kMoeTp) == singletons(8));
    CHECK(rank_lists(l, GroupFamily::kMoeDp) == Lists{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  }
  SECTION("d3 ep 2, moe_dp 4") {
    const RankLayout l(make_config(8, 1, 1, false, 1, 2, 4));
    CHECK(rank_lists(l, GroupFamily::kMoeEp) == Lists{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
    CHECK(rank_lists(l, GroupFamily::kMoeDp) == Lists{{0, 2, 4, 6}, {1, 3, 5, 7}});
  }
  SECTION("d4 ep 1, moe_dp 2 -> moe_tp 4") {
    const RankLayout l(make_config(8, 1, 1, false, 1, 1, 2));
    CHECK(rank_lists(l, GroupFamily::kMoeEp) == singletons(8));
    CHECK(rank_lists(l, GroupFamily::kMoeTp) == Lists{{0, 1, 2, 3}, {4, 5, 6, 7}});
    CHECK(rank_lists(l, GroupFamily::kMoeDp) == Lists{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  }
  SECTION("d5 ep 2, moe_dp 2, moe_tp 2 (built by the function, rejected by ServerArgs)") {
    const RankLayout l(make_config(8, 1, 1, false, 1, 2, 2));
    CHECK(rank_lists(l, GroupFamily::kMoeEp) == Lists{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
    CHECK(rank_lists(l, GroupFamily::kMoeTp) == Lists{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
    CHECK(rank_lists(l, GroupFamily::kMoeDp) == Lists{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  }
  SECTION("d6 ep 8, moe_dp 2: SGLang silently builds empty groups, paratwin refuses") {
    CHECK_THROWS_AS(RankLayout(make_config(8, 1, 1, false, 1, 8, 2)), Error);
  }
}

TEST_CASE("(e) tp 8, dp 2, attn_cp 2, ep 4, moe_dp 2: every coordinate", "[golden]") {
  const RankLayout layout(make_config(8, 1, 2, true, 2, 4, 2));
  // {attn_dp, attn_cp, attn_tp, moe_dp, moe_ep} per rank, from the spec's table.
  const int expected[8][5] = {{0, 0, 0, 0, 0}, {0, 0, 1, 0, 1}, {0, 1, 0, 0, 2}, {0, 1, 1, 0, 3},
                              {1, 0, 0, 1, 0}, {1, 0, 1, 1, 1}, {1, 1, 0, 1, 2}, {1, 1, 1, 1, 3}};
  for (int r = 0; r < 8; ++r) {
    const auto& co = layout.coords(r);
    INFO("rank " << r);
    CHECK(co.attn_dp_rank == expected[r][0]);
    CHECK(co.attn_cp_rank == expected[r][1]);
    CHECK(co.attn_tp_rank == expected[r][2]);
    CHECK(co.moe_dp_rank == expected[r][3]);
    CHECK(co.moe_ep_rank == expected[r][4]);
    CHECK(co.moe_tp_rank == 0);
  }
}

TEST_CASE("(f) the Qwen3-MoE CP layout of #18233, and the MOE_DP alias rule", "[golden]") {
  const RankLayout layout(make_config(4, 1, 1, false, 2, 2, 2));
  CHECK(rank_lists(layout, GroupFamily::kAttnTp) == Lists{{0, 1}, {2, 3}});
  CHECK(rank_lists(layout, GroupFamily::kAttnCp) == Lists{{0, 2}, {1, 3}});
  CHECK(rank_lists(layout, GroupFamily::kMoeEp) == Lists{{0, 1}, {2, 3}});
  CHECK(rank_lists(layout, GroupFamily::kMoeDp) == Lists{{0, 2}, {1, 3}});

  auto config = make_config(4, 1, 1, false, 2, 4, 1);
  SECTION("merged rule: moe_dp singletons") {
    const RankLayout merged(config);
    CHECK(rank_lists(merged, GroupFamily::kMoeDp) == singletons(4));
    CHECK_FALSE(merged.moe_dp_is_attn_cp());
  }
  SECTION("newest upstream rule: MOE_DP is the ATTN_CP group, its rank is the CP rank") {
    config.moe_dp_rule = MoeDpRule::kAliasAttnCpWhenLarger;
    const RankLayout aliased(config);
    CHECK(aliased.moe_dp_is_attn_cp());
    CHECK(rank_lists(aliased, GroupFamily::kMoeDp) == Lists{{0, 2}, {1, 3}});
    CHECK(aliased.coords(2).moe_dp_rank == 1);
    CHECK(aliased.coords(2).moe_dp_rank == aliased.coords(2).attn_cp_rank);
  }
}

TEST_CASE("(g) tp 8, pp 2, attn_cp 2, ep 4, moe_dp 2: stage 1 is stage 0 offset by 8", "[golden]") {
  const RankLayout layout(make_config(8, 2, 1, false, 2, 4, 2));
  CHECK(rank_lists(layout, GroupFamily::kMoeEp) == blocks(16, 4));
  CHECK(rank_lists(layout, GroupFamily::kMoeDp) ==
        Lists{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}});
}

TEST_CASE("creation order and SGLang group names", "[golden]") {
  std::vector<std::string> names;
  for (const auto family : kAllFamilies) {
    if (!sglang_group_name(family).empty()) names.emplace_back(sglang_group_name(family));
  }
  CHECK(names == std::vector<std::string>{"tp", "attn_cp", "attention_tp", "moe_dp", "moe_ep", "moe_tp", "pp"});
  CHECK(parse_family("attn_cp") == GroupFamily::kAttnCp);
  CHECK_THROWS_AS(parse_family("cp"), Error);
}
