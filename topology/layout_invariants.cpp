#include "topology/layout_invariants.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <utility>

namespace paratwin {
namespace {

// Keeps reports readable for large worlds.
constexpr std::size_t kMaxViolations = 20;

std::string describe_group(const RankGroup& g) {
  if (g.ranks.size() <= 16) return fmt::format("{} group {} {}", family_key(g.family), g.index, g.ranks);
  return fmt::format("{} group {} ({} ranks starting {})", family_key(g.family), g.index, g.ranks.size(),
                     std::vector<int>(g.ranks.begin(), g.ranks.begin() + 8));
}

int expected_size(const ParallelConfig& c, GroupFamily family, bool moe_dp_aliased) {
  switch (family) {
    case GroupFamily::kTp:
      return c.tp_size;
    case GroupFamily::kPp:
      return c.pp_size;
    case GroupFamily::kAttnDp:
      return c.attn_cp_size * c.attn_tp_size();
    case GroupFamily::kAttnCp:
      return c.attn_cp_size;
    case GroupFamily::kAttnTp:
      return c.attn_tp_size();
    case GroupFamily::kMoeDp:
      return moe_dp_aliased ? c.attn_cp_size : c.moe_dp_size;
    case GroupFamily::kMoeEp:
      return c.ep_size;
    case GroupFamily::kMoeTp:
      return c.moe_tp_size();
  }
  return 0;
}

// A rank's expected position inside its group of `family` (SGLang's formula).
int formula_position(const RankCoords& f, GroupFamily family, const ParallelConfig& c) {
  switch (family) {
    case GroupFamily::kTp:
      return f.tp_rank;
    case GroupFamily::kPp:
      return f.pp_rank;
    case GroupFamily::kAttnDp:
      return f.tp_rank % (c.attn_cp_size * c.attn_tp_size());
    case GroupFamily::kAttnCp:
      return f.attn_cp_rank;
    case GroupFamily::kAttnTp:
      return f.attn_tp_rank;
    case GroupFamily::kMoeDp:
      return f.moe_dp_rank;
    case GroupFamily::kMoeEp:
      return f.moe_ep_rank;
    case GroupFamily::kMoeTp:
      return f.moe_tp_rank;
  }
  return -1;
}

class Checker {
 public:
  Checker(const ParallelConfig& c, const GroupTable& t) : c_(c), t_(t), world_(c.world()) {}

  std::vector<std::string> run() {
    const bool moe_dp_aliased = c_.moe_dp_rule == MoeDpRule::kAliasAttnCpWhenLarger && c_.attn_cp_size > c_.moe_dp_size;
    bool partitions_ok = true;
    for (const auto family : kAllFamilies)
      partitions_ok &= check_partition(family, expected_size(c_, family, moe_dp_aliased));
    if (!partitions_ok) return out_;  // the remaining checks assume every rank has one group per family
    for (const auto family : kAllFamilies) check_stage_span(family);
    check_positions();
    // Orthogonal grids. The attention grid's DP axis is the set of ranks at one position across DP replicas.
    const auto dp_axis = attention_dp_axis();
    check_orthogonal({&t_.of(GroupFamily::kAttnTp), &t_.of(GroupFamily::kAttnCp), &dp_axis});
    if (moe_dp_aliased) {
      check_orthogonal({&t_.of(GroupFamily::kMoeTp), &t_.of(GroupFamily::kMoeEp)});
    } else {
      check_orthogonal({&t_.of(GroupFamily::kMoeTp), &t_.of(GroupFamily::kMoeEp), &t_.of(GroupFamily::kMoeDp)});
    }
    return out_;
  }

 private:
  void report(std::string message) {
    if (out_.size() < kMaxViolations) out_.push_back(std::move(message));
  }
  [[nodiscard]] int stage_of(int rank) const { return rank / c_.tp_size; }

  bool check_partition(GroupFamily family, int size) {
    const auto& groups = t_.of(family);
    std::vector<int> seen(static_cast<std::size_t>(world_), 0);
    bool ok = true;
    for (std::size_t i = 0; i < groups.size(); ++i) {
      const auto& g = groups[i];
      if (g.family != family || g.index != static_cast<int>(i)) {
        report(fmt::format("{} group at position {} is labelled {} index {}: groups must be numbered in creation order",
                           family_key(family), i, family_key(g.family), g.index));
        ok = false;
      }
      if (static_cast<int>(g.ranks.size()) != size) {
        report(fmt::format("{} has {} ranks, expected {}", describe_group(g), g.ranks.size(), size));
        ok = false;
      }
      for (const int r : g.ranks) {
        if (r < 0 || r >= world_) {
          report(fmt::format("{} holds rank {} outside the world [0, {})", describe_group(g), r, world_));
          ok = false;
        } else {
          ++seen[static_cast<std::size_t>(r)];
        }
      }
    }
    for (int r = 0; r < world_; ++r) {
      const int n = seen[static_cast<std::size_t>(r)];
      if (n != 1) {
        report(fmt::format("rank {} is in {} {} groups: each family must partition every PP stage", r, n,
                           family_key(family)));
        ok = false;
      }
    }
    return ok;
  }

  void check_stage_span(GroupFamily family) {
    for (const auto& g : t_.of(family)) {
      if (family == GroupFamily::kPp) {
        for (std::size_t i = 0; i < g.ranks.size(); ++i) {
          if (stage_of(g.ranks[i]) != static_cast<int>(i)) {
            report(fmt::format("{} does not hold one rank of each PP stage in stage order", describe_group(g)));
            break;
          }
        }
        continue;
      }
      const int stage = stage_of(g.ranks.front());
      for (const int r : g.ranks) {
        if (stage_of(r) != stage) {
          report(fmt::format("{} spans PP stages {} and {}: groups other than PP must stay inside one stage",
                             describe_group(g), stage, stage_of(r)));
          break;
        }
      }
    }
  }

  void check_positions() {
    for (const auto family : kAllFamilies) {
      for (const auto& g : t_.of(family)) {
        for (std::size_t i = 0; i < g.ranks.size(); ++i) {
          const auto formula = sglang_rank_formulas(c_, g.ranks[i]);
          const int expected = formula_position(formula, family, c_);
          if (expected != static_cast<int>(i)) {
            report(fmt::format("rank {} sits at position {} of {}, but SGLang's formula gives {}", g.ranks[i], i,
                               describe_group(g), expected));
          }
        }
        if (family == GroupFamily::kAttnDp && !g.ranks.empty()) {
          const int d = sglang_rank_formulas(c_, g.ranks.front()).attn_dp_rank;
          if (g.index % c_.attn_dp_size() != d) {
            report(fmt::format("{} is numbered {}, but its ranks have attn_dp_rank {}", describe_group(g), g.index, d));
          }
        }
      }
    }
  }

  [[nodiscard]] std::vector<RankGroup> attention_dp_axis() const {
    std::map<std::pair<int, int>, RankGroup> axis;  // (stage, position in replica) -> ranks across replicas
    for (const auto& replica : t_.of(GroupFamily::kAttnDp)) {
      for (std::size_t i = 0; i < replica.ranks.size(); ++i) {
        auto& g = axis[{stage_of(replica.ranks.front()), static_cast<int>(i)}];
        g.family = GroupFamily::kAttnDp;
        g.ranks.push_back(replica.ranks[i]);
      }
    }
    std::vector<RankGroup> groups;
    for (auto& [key, g] : axis) {
      g.index = static_cast<int>(groups.size());
      groups.push_back(std::move(g));
    }
    return groups;
  }

  // Two groups of different families of one grid share at most one rank.
  void check_orthogonal(const std::vector<const std::vector<RankGroup>*>& grid) {
    for (std::size_t a = 0; a < grid.size(); ++a) {
      for (std::size_t b = a + 1; b < grid.size(); ++b) {
        std::vector<int> group_in_b(static_cast<std::size_t>(world_), -1);
        for (const auto& g : *grid[b]) {
          for (const int r : g.ranks) group_in_b[static_cast<std::size_t>(r)] = g.index;
        }
        for (const auto& g : *grid[a]) {
          std::map<int, int> shared;
          for (const int r : g.ranks) {
            const int other = group_in_b[static_cast<std::size_t>(r)];
            if (++shared[other] == 2) {
              report(fmt::format("{} and {} group {} share more than one rank: the grid is not orthogonal",
                                 describe_group(g), family_key((*grid[b])[static_cast<std::size_t>(other)].family),
                                 other));
            }
          }
        }
      }
    }
  }

  const ParallelConfig& c_;
  const GroupTable& t_;
  int world_;
  std::vector<std::string> out_;
};

}  // namespace

std::vector<std::string> layout_violations(const ParallelConfig& config, const GroupTable& table) {
  return Checker(config, table).run();
}

}  // namespace paratwin
