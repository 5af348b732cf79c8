#pragma once
/// How the CUDA backend builds its NCCL communicators, mirroring SGLang's group coordinators: one world
/// communicator, then one per group family made with ncclCommSplit (color = group index, key = position in the
/// group), in SGLang's creation order. A family whose groups are the TP groups shares the TP communicator (SGLang
/// aliases it); MOE_DP under the "alias ATTN_CP when larger" rule shares the ATTN_CP communicator. Plain data, no
/// CUDA: the engine executes the plan, the CPU tests check it.

#include <cstdint>
#include <string>
#include <vector>

#include "topology/rank_layout.hpp"

namespace paratwin::cuda_plan {

enum class CommSource : std::uint8_t {
  kSplit,        ///< ncclCommSplit of the world communicator
  kAliasTp,      ///< the TP communicator itself
  kAliasAttnCp,  ///< the ATTN_CP communicator itself
  kNone,         ///< no communicator (attn_dp: SGLang builds no group for it)
};

/// One family's communicator: how it is obtained and, for splits, every rank's color and key.
struct FamilyComm {
  GroupFamily family = GroupFamily::kTp;
  CommSource source = CommSource::kNone;
  std::vector<int> color;  ///< per global rank: the group index (kSplit only)
  std::vector<int> key;    ///< per global rank: its position in the group (kSplit only)
};

/// The communicators of one world, in creation order (splits are collective: every rank performs them in this order).
struct CommPlan {
  int world_size = 0;
  std::vector<FamilyComm> families;  ///< one entry per GroupFamily, in kAllFamilies order
  [[nodiscard]] const FamilyComm& of(GroupFamily family) const;
  [[nodiscard]] FamilyComm& of(GroupFamily family);
};

[[nodiscard]] CommPlan plan_communicators(const RankLayout& layout);

/// Fault injection for tests: swaps the positions (keys) of two members of one group of `family`, as a wrong
/// group layout would (in the communicator the family uses: TP's when it aliases TP). Throws paratwin::Error when
/// the family has no communicator or the positions are out of range.
void swap_group_positions(CommPlan& plan, const RankLayout& layout, GroupFamily family, int group_index, int pos_a,
                          int pos_b);

/// Fault injection for tests: builds `family`'s communicators from `groups` (rank lists, in position order) instead
/// of the layout's, as a wrong group layout would (e.g. a draft whose MoE groups run into the next pipeline stage).
/// Throws paratwin::Error unless `groups` partitions the world's ranks.
void override_groups(CommPlan& plan, GroupFamily family, const std::vector<std::vector<int>>& groups);

/// "tp: split (2 groups of 4); attn_cp: = tp; ..." for logs.
[[nodiscard]] std::string describe(const CommPlan& plan, const RankLayout& layout);

}  // namespace paratwin::cuda_plan
