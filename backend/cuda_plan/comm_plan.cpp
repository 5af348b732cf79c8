#include "backend/cuda_plan/comm_plan.hpp"

#include <fmt/format.h>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {

const FamilyComm& CommPlan::of(GroupFamily family) const {
  return families.at(static_cast<std::size_t>(family_index(family)));
}
FamilyComm& CommPlan::of(GroupFamily family) {
  return families.at(static_cast<std::size_t>(family_index(family)));
}

CommPlan plan_communicators(const RankLayout& layout) {
  CommPlan plan;
  plan.world_size = layout.world_size();
  for (const auto family : kAllFamilies) {
    FamilyComm fc;
    fc.family = family;
    if (family == GroupFamily::kAttnDp) {
      fc.source = CommSource::kNone;
    } else if (family != GroupFamily::kTp && layout.aliases_tp(family)) {
      fc.source = CommSource::kAliasTp;
    } else if (family == GroupFamily::kMoeDp && layout.moe_dp_is_attn_cp()) {
      fc.source = CommSource::kAliasAttnCp;
    } else {
      fc.source = CommSource::kSplit;
      const auto n = static_cast<std::size_t>(plan.world_size);
      fc.color.assign(n, -1);
      fc.key.assign(n, -1);
      for (const auto& group : layout.groups(family)) {
        for (std::size_t pos = 0; pos < group.ranks.size(); ++pos) {
          const auto r = static_cast<std::size_t>(group.ranks[pos]);
          fc.color[r] = group.index;
          fc.key[r] = static_cast<int>(pos);
        }
      }
      for (std::size_t r = 0; r < n; ++r) {
        PARATWIN_ASSERT(fc.color[r] >= 0, "rank {} is in no group of family {}", r, family_key(family));
      }
    }
    plan.families.push_back(std::move(fc));
  }
  return plan;
}

void swap_group_positions(CommPlan& plan, const RankLayout& layout, GroupFamily family, int group_index, int pos_a,
                          int pos_b) {
  // An aliased family's groups are those of the communicator it shares: swap there.
  GroupFamily target = family;
  switch (plan.of(family).source) {
    case CommSource::kSplit:
      break;
    case CommSource::kAliasTp:
      target = GroupFamily::kTp;
      break;
    case CommSource::kAliasAttnCp:
      target = GroupFamily::kAttnCp;
      break;
    case CommSource::kNone:
      fail("cannot swap positions in family {}: it has no communicator", family_key(family));
  }
  const auto& groups = layout.groups(family);
  if (group_index < 0 || group_index >= static_cast<int>(groups.size())) {
    fail("family {} has no group {}", family_key(family), group_index);
  }
  const auto& ranks = groups[static_cast<std::size_t>(group_index)].ranks;
  const int size = static_cast<int>(ranks.size());
  if (pos_a < 0 || pos_b < 0 || pos_a >= size || pos_b >= size) {
    fail("positions {} and {} are outside group {}[{}] of {} ranks", pos_a, pos_b, family_key(family), group_index,
         size);
  }
  auto& key = plan.of(target).key;
  std::swap(key[static_cast<std::size_t>(ranks[static_cast<std::size_t>(pos_a)])],
            key[static_cast<std::size_t>(ranks[static_cast<std::size_t>(pos_b)])]);
}

void override_groups(CommPlan& plan, GroupFamily family, const std::vector<std::vector<int>>& groups) {
  const auto n = static_cast<std::size_t>(plan.world_size);
  FamilyComm fc;
  fc.family = family;
  fc.source = CommSource::kSplit;
  fc.color.assign(n, -1);
  fc.key.assign(n, -1);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t pos = 0; pos < groups[g].size(); ++pos) {
      const int r = groups[g][pos];
      if (r < 0 || r >= plan.world_size || fc.color[static_cast<std::size_t>(r)] >= 0) {
        fail("override of family {}: rank {} of group {} is outside the world of {} or in two groups",
             family_key(family), r, g, plan.world_size);
      }
      fc.color[static_cast<std::size_t>(r)] = static_cast<int>(g);
      fc.key[static_cast<std::size_t>(r)] = static_cast<int>(pos);
    }
  }
  for (std::size_t r = 0; r < n; ++r) {
    if (fc.color[r] < 0) fail("override of family {}: rank {} is in no group", family_key(family), r);
  }
  plan.of(family) = std::move(fc);
}

std::string describe(const CommPlan& plan, const RankLayout& layout) {
  std::string s;
  for (const auto& fc : plan.families) {
    if (!s.empty()) s += "; ";
    s += fmt::format("{}: ", family_key(fc.family));
    switch (fc.source) {
      case CommSource::kSplit:
        s += fmt::format("split ({} groups of {})", layout.groups(fc.family).size(), layout.group_size(fc.family));
        break;
      case CommSource::kAliasTp:
        s += "= tp";
        break;
      case CommSource::kAliasAttnCp:
        s += "= attn_cp";
        break;
      case CommSource::kNone:
        s += "none";
        break;
    }
  }
  return s;
}

}  // namespace paratwin::cuda_plan
