#include "topology/rank_layout.hpp"

#include <fmt/format.h>

#include <array>

#include "topology/error.hpp"
#include "topology/layout_invariants.hpp"

namespace paratwin {
namespace {

// A stage factorization as a shape with strides over four modes, outermost first: (pp, outer, middle, inner).
struct Factorization {
  std::array<int, 4> shape{};
  std::array<int, 4> stride{};
};

Factorization attention_factorization(const ParallelConfig& c) {
  const int atp = c.attn_tp_size();
  return {{c.pp_size, c.attn_dp_size(), c.attn_cp_size, atp}, {c.tp_size, c.attn_cp_size * atp, atp, 1}};
}

Factorization moe_factorization(const ParallelConfig& c) {
  const int mtp = c.moe_tp_size();
  return {{c.pp_size, c.moe_dp_size, c.ep_size, mtp}, {c.tp_size, c.ep_size * mtp, mtp, 1}};
}

// Groups that vary the modes in `varying` and fix the others. Groups are numbered by the fixed modes in
// lexicographic order (outermost first) and list their ranks by the varying modes in the same order: this is the
// order of SGLang's construction loops, so positions equal SGLang's rank formulas.
std::vector<RankGroup> groups_along(GroupFamily family, const Factorization& f, std::array<bool, 4> varying) {
  std::array<int, 4> fixed_shape{}, vary_shape{};
  int fixed_count = 1, vary_count = 1;
  for (std::size_t m = 0; m < 4; ++m) {
    fixed_shape[m] = varying[m] ? 1 : f.shape[m];
    vary_shape[m] = varying[m] ? f.shape[m] : 1;
    fixed_count *= fixed_shape[m];
    vary_count *= vary_shape[m];
  }
  // Decodes a lexicographic index over `shape` into a coordinate, innermost mode fastest.
  const auto decode = [](int index, const std::array<int, 4>& shape) {
    std::array<int, 4> coord{};
    for (std::size_t m = 4; m-- > 0;) {
      coord[m] = index % shape[m];
      index /= shape[m];
    }
    return coord;
  };
  std::vector<RankGroup> groups(static_cast<std::size_t>(fixed_count));
  for (int g = 0; g < fixed_count; ++g) {
    const auto fixed = decode(g, fixed_shape);
    auto& group = groups[static_cast<std::size_t>(g)];
    group.family = family;
    group.index = g;
    group.ranks.reserve(static_cast<std::size_t>(vary_count));
    for (int v = 0; v < vary_count; ++v) {
      const auto moving = decode(v, vary_shape);
      int rank = 0;
      for (std::size_t m = 0; m < 4; ++m) rank += (fixed[m] + moving[m]) * f.stride[m];
      group.ranks.push_back(rank);
    }
  }
  return groups;
}

bool moe_dp_aliases_attn_cp(const ParallelConfig& c) {
  return c.moe_dp_rule == MoeDpRule::kAliasAttnCpWhenLarger && c.attn_cp_size > c.moe_dp_size;
}

}  // namespace

std::string_view family_key(GroupFamily family) {
  switch (family) {
    case GroupFamily::kTp:
      return "tp";
    case GroupFamily::kAttnCp:
      return "attn_cp";
    case GroupFamily::kAttnTp:
      return "attn_tp";
    case GroupFamily::kMoeDp:
      return "moe_dp";
    case GroupFamily::kMoeEp:
      return "moe_ep";
    case GroupFamily::kMoeTp:
      return "moe_tp";
    case GroupFamily::kPp:
      return "pp";
    case GroupFamily::kAttnDp:
      return "attn_dp";
  }
  return "?";
}

std::string_view sglang_group_name(GroupFamily family) {
  switch (family) {
    case GroupFamily::kAttnTp:
      return "attention_tp";
    case GroupFamily::kAttnDp:
      return "";
    default:
      return family_key(family);
  }
}

GroupFamily parse_family(std::string_view key) {
  for (const auto family : kAllFamilies) {
    if (family_key(family) == key) return family;
  }
  fail("unknown group family '{}': use tp, pp, attn_tp, attn_cp, attn_dp, moe_ep, moe_tp or moe_dp", key);
}

GroupTable build_group_table(const ParallelConfig& c) {
  const auto attn = attention_factorization(c);
  const auto moe = moe_factorization(c);
  GroupTable table;
  table.of(GroupFamily::kTp) = groups_along(GroupFamily::kTp, attn, {false, true, true, true});
  table.of(GroupFamily::kPp) = groups_along(GroupFamily::kPp, attn, {true, false, false, false});
  table.of(GroupFamily::kAttnDp) = groups_along(GroupFamily::kAttnDp, attn, {false, false, true, true});
  table.of(GroupFamily::kAttnCp) = groups_along(GroupFamily::kAttnCp, attn, {false, false, true, false});
  table.of(GroupFamily::kAttnTp) = groups_along(GroupFamily::kAttnTp, attn, {false, false, false, true});
  table.of(GroupFamily::kMoeEp) = groups_along(GroupFamily::kMoeEp, moe, {false, false, true, false});
  table.of(GroupFamily::kMoeTp) = groups_along(GroupFamily::kMoeTp, moe, {false, false, false, true});
  if (moe_dp_aliases_attn_cp(c)) {
    // Newest upstream (PR #22003): CP ranks must share tokens before MoE, so MOE_DP *is* the ATTN_CP group.
    auto groups = table.of(GroupFamily::kAttnCp);
    for (auto& g : groups) g.family = GroupFamily::kMoeDp;
    table.of(GroupFamily::kMoeDp) = std::move(groups);
  } else {
    table.of(GroupFamily::kMoeDp) = groups_along(GroupFamily::kMoeDp, moe, {false, true, false, false});
  }
  return table;
}

RankCoords sglang_rank_formulas(const ParallelConfig& c, int rank) {
  RankCoords r;
  r.rank = rank;
  r.pp_rank = rank / c.tp_size;
  const int t = rank % c.tp_size;
  r.tp_rank = t;
  const int attn_tp = c.attn_tp_size();
  r.attn_tp_rank = t % attn_tp;
  r.attn_cp_rank = (t / attn_tp) % c.attn_cp_size;
  r.attn_dp_rank = t / (attn_tp * c.attn_cp_size);
  const int per_moe_dp = c.tp_size / c.moe_dp_size;
  r.moe_dp_rank = moe_dp_aliases_attn_cp(c) ? r.attn_cp_rank : t / per_moe_dp;
  r.moe_ep_rank = (t % per_moe_dp) / (per_moe_dp / c.ep_size);
  r.moe_tp_rank = t % c.moe_tp_size();
  return r;
}

RankLayout::RankLayout(const ParallelConfig& config)
    : config_(config), moe_dp_is_attn_cp_(moe_dp_aliases_attn_cp(config)) {
  validate_structure(config_);
  table_ = build_group_table(config_);
  const auto world = static_cast<std::size_t>(world_size());
  for (const auto family : kAllFamilies) {
    auto& lookup = group_of_[static_cast<std::size_t>(family_index(family))];
    lookup.assign(world, -1);
    for (const auto& g : table_.of(family)) {
      for (const int r : g.ranks) lookup[static_cast<std::size_t>(r)] = g.index;
    }
  }
  if (const auto violations = layout_violations(config_, table_); !violations.empty()) {
    throw InternalError(
        fmt::format("paratwin built an inconsistent layout for {}: {}", config_.to_flags(), violations.front()));
  }
  // Coordinates are read off the groups (position of the rank in its group); the checker above has verified they
  // equal SGLang's formulas.
  coords_.resize(world);
  const auto fill = [&](GroupFamily family, int RankCoords::*field) {
    for (const auto& g : table_.of(family)) {
      for (std::size_t i = 0; i < g.ranks.size(); ++i)
        coords_[static_cast<std::size_t>(g.ranks[i])].*field = static_cast<int>(i);
    }
  };
  fill(GroupFamily::kTp, &RankCoords::tp_rank);
  fill(GroupFamily::kPp, &RankCoords::pp_rank);
  fill(GroupFamily::kAttnCp, &RankCoords::attn_cp_rank);
  fill(GroupFamily::kAttnTp, &RankCoords::attn_tp_rank);
  fill(GroupFamily::kMoeDp, &RankCoords::moe_dp_rank);
  fill(GroupFamily::kMoeEp, &RankCoords::moe_ep_rank);
  fill(GroupFamily::kMoeTp, &RankCoords::moe_tp_rank);
  for (int r = 0; r < world_size(); ++r) {
    auto& co = coords_[static_cast<std::size_t>(r)];
    co.rank = r;
    co.attn_dp_rank = group_index_of(GroupFamily::kAttnDp, r) % config_.attn_dp_size();
  }
}

int RankLayout::group_index_of(GroupFamily family, int rank) const {
  PARATWIN_ASSERT(rank >= 0 && rank < world_size(), "rank {} outside world of {}", rank, world_size());
  return group_of_[static_cast<std::size_t>(family_index(family))][static_cast<std::size_t>(rank)];
}

const RankGroup& RankLayout::group_of(GroupFamily family, int rank) const {
  return table_.of(family)[static_cast<std::size_t>(group_index_of(family, rank))];
}

const RankCoords& RankLayout::coords(int rank) const {
  PARATWIN_ASSERT(rank >= 0 && rank < world_size(), "rank {} outside world of {}", rank, world_size());
  return coords_[static_cast<std::size_t>(rank)];
}

int RankLayout::group_size(GroupFamily family) const {
  return static_cast<int>(table_.of(family).front().ranks.size());
}

bool RankLayout::aliases_tp(GroupFamily family) const {
  switch (family) {
    case GroupFamily::kTp:
      return true;
    case GroupFamily::kPp:
    case GroupFamily::kAttnDp:
      return false;
    case GroupFamily::kMoeDp:
      if (moe_dp_is_attn_cp_) return config_.attn_cp_size == config_.tp_size;
      return config_.moe_dp_size == config_.tp_size;
    default:
      return group_size(family) == config_.tp_size;
  }
}

}  // namespace paratwin
