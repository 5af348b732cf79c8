// Property tests over every structurally valid configuration with world ≤ 64 and pp ≤ 4 (both MOE_DP rules).
#include <catch2/catch.hpp>
#include <functional>

#include "tests/test_sweep.hpp"
#include "tests/topology/layout_test_util.hpp"
#include "topology/layout_invariants.hpp"
#include "topology/rank_layout.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

// Calls `visit` for every structurally valid configuration with world ≤ 64 and pp ≤ 4 (every kSweepStride-th under
// the sanitizers); returns how many there are.
int for_each_config(const std::function<void(const ParallelConfig&)>& visit) {
  int count = 0;
  for (int pp = 1; pp <= 4; ++pp) {
    for (int tp = 1; tp * pp <= 64; ++tp) {
      for (const bool dp_attention : {false, true}) {
        for (const int dp : divisors(tp)) {
          if (!dp_attention && dp > 1) continue;  // plain DP replicates whole worlds: same layout
          for (const int cp : divisors(tp / dp)) {
            for (const int moe_dp : divisors(tp)) {
              for (const int ep : divisors(tp / moe_dp)) {
                for (const auto rule : {MoeDpRule::kMerged, MoeDpRule::kAliasAttnCpWhenLarger}) {
                  auto c = make_config(tp, pp, dp, dp_attention, cp, ep, moe_dp);
                  c.moe_dp_rule = rule;
                  REQUIRE(structural_errors(c).empty());
                  if (count % test::kSweepStride == 0) visit(c);
                  ++count;
                }
              }
            }
          }
        }
      }
    }
  }
  return count;
}

}  // namespace

TEST_CASE("every valid configuration builds a sound layout whose coordinates follow SGLang's formulas", "[property]") {
  const int count = for_each_config([](const ParallelConfig& c) {
    const RankLayout layout(c);  // runs the invariant checker
    const int world = layout.world_size();
    const int tp = c.tp_size;
    const int atp = c.attn_tp_size();
    const int mtp = c.moe_tp_size();
    for (int r = 0; r < world; ++r) {
      const auto& co = layout.coords(r);
      const auto formula = sglang_rank_formulas(c, r);
      if (!(co == formula)) FAIL("coords of rank " << r << " differ from SGLang's formulas for " << c.to_flags());
      // rank(coord(r)) == r in both factorizations (CuTe-style round trip).
      const int from_attention =
          co.pp_rank * tp + (co.attn_dp_rank * c.attn_cp_size + co.attn_cp_rank) * atp + co.attn_tp_rank;
      if (from_attention != r) FAIL("attention coordinates of rank " << r << " do not map back for " << c.to_flags());
      if (!layout.moe_dp_is_attn_cp()) {
        const int from_moe = co.pp_rank * tp + (co.moe_dp_rank * c.ep_size + co.moe_ep_rank) * mtp + co.moe_tp_rank;
        if (from_moe != r) FAIL("MoE coordinates of rank " << r << " do not map back for " << c.to_flags());
      }
    }
    for (const auto family : kAllFamilies) {
      const auto& groups = layout.groups(family);
      const auto size = static_cast<std::size_t>(layout.group_size(family));
      if (groups.size() * size != static_cast<std::size_t>(world)) {
        FAIL(family_key(family) << " groups × size != world for " << c.to_flags());
      }
      for (int r = 0; r < world; ++r) {
        const auto& ranks = layout.group_of(family, r).ranks;
        if (std::find(ranks.begin(), ranks.end(), r) == ranks.end()) {
          FAIL("group_of does not hold rank " << r << " for " << c.to_flags());
        }
      }
      // The aliasing rule: a family aliases TP exactly when its groups are the TP groups.
      if (family != GroupFamily::kPp && family != GroupFamily::kAttnDp) {
        const bool same_as_tp = rank_lists(layout, family) == rank_lists(layout, GroupFamily::kTp);
        if (layout.aliases_tp(family) != same_as_tp) {
          FAIL(family_key(family) << " alias flag disagrees with its groups for " << c.to_flags());
        }
      }
    }
  });
  CHECK(count > 5000);
}

TEST_CASE("group sizes multiply to the stage width in both factorizations", "[property]") {
  for_each_config([](const ParallelConfig& c) {
    const RankLayout layout(c);
    CHECK(layout.group_size(GroupFamily::kAttnTp) * layout.group_size(GroupFamily::kAttnCp) * c.attn_dp_size() ==
          c.tp_size);
    if (!layout.moe_dp_is_attn_cp()) {
      CHECK(layout.group_size(GroupFamily::kMoeTp) * layout.group_size(GroupFamily::kMoeEp) *
                layout.group_size(GroupFamily::kMoeDp) ==
            c.tp_size);
    }
    CHECK(layout.group_size(GroupFamily::kTp) * layout.group_size(GroupFamily::kPp) == layout.world_size());
  });
}
