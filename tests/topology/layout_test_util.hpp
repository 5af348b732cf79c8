#pragma once
// Small helpers shared by the topology tests.

#include <vector>

#include "topology/rank_layout.hpp"

namespace paratwin::test {

/// The rank lists of one family, in group order.
inline std::vector<std::vector<int>> rank_lists(const RankLayout& layout, GroupFamily family) {
  std::vector<std::vector<int>> lists;
  for (const auto& g : layout.groups(family)) lists.push_back(g.ranks);
  return lists;
}

/// n singleton groups [0] [1] ... [n-1].
inline std::vector<std::vector<int>> singletons(int n) {
  std::vector<std::vector<int>> lists;
  for (int r = 0; r < n; ++r) lists.push_back({r});
  return lists;
}

/// Consecutive blocks of `size` over [0, n).
inline std::vector<std::vector<int>> blocks(int n, int size) {
  std::vector<std::vector<int>> lists;
  for (int b = 0; b < n; b += size) {
    std::vector<int> group;
    for (int r = b; r < b + size; ++r) group.push_back(r);
    lists.push_back(group);
  }
  return lists;
}

/// A layout's sizes in --flag order (the placement, schedule and CUDA backend tests build theirs with it too).
inline ParallelConfig make_config(int tp, int pp = 1, int dp = 1, bool dp_attention = false, int attn_cp = 1,
                                  int ep = 1, int moe_dp = 1) {
  ParallelConfig c;
  c.tp_size = tp;
  c.pp_size = pp;
  c.dp_size = dp;
  c.enable_dp_attention = dp_attention;
  c.attn_cp_size = attn_cp;
  c.ep_size = ep;
  c.moe_dp_size = moe_dp;
  return c;
}

}  // namespace paratwin::test
