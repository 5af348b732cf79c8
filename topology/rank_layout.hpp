#pragma once
/// The rank layout: which ranks form which process group, exactly as SGLang's `initialize_model_parallel` builds
/// them at the PR #17213 merge (sglang-parallel-state.md §1.3), and each rank's coordinate in every family.
///
/// One pipeline stage of `tp` consecutive ranks is factored twice, CuTe-style, as a shape with strides:
///   attention  (pp, attn_dp, attn_cp, attn_tp)  strides (tp, attn_cp·attn_tp, attn_tp, 1)
///   MoE        (pp, moe_dp,  ep,      moe_tp)   strides (tp, ep·moe_tp,      moe_tp,  1)
/// A family's groups vary some modes and fix the others; groups are numbered by the fixed modes in lexicographic
/// order, outermost first, which is the order of SGLang's loops, and ranks inside a group follow the varying modes
/// in the same order, which makes a rank's position in its group equal SGLang's rank formula.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "topology/parallel_config.hpp"

namespace paratwin {

/// The group families SGLang creates (plus the implicit attention-DP replicas), in SGLang's creation order:
/// tp, attn_cp, attention_tp, moe_dp, moe_ep, moe_tp, pp. kAttnDp comes last: SGLang builds no group for it.
enum class GroupFamily : std::uint8_t { kTp, kAttnCp, kAttnTp, kMoeDp, kMoeEp, kMoeTp, kPp, kAttnDp };

inline constexpr int kFamilyCount = 8;
inline constexpr std::array<GroupFamily, kFamilyCount> kAllFamilies = {
    GroupFamily::kTp,    GroupFamily::kAttnCp, GroupFamily::kAttnTp, GroupFamily::kMoeDp,
    GroupFamily::kMoeEp, GroupFamily::kMoeTp,  GroupFamily::kPp,     GroupFamily::kAttnDp};

/// paratwin's key for the family ("tp", "attn_cp", "attn_tp", "moe_dp", "moe_ep", "moe_tp", "pp", "attn_dp").
[[nodiscard]] std::string_view family_key(GroupFamily family);
/// SGLang's group_name ("tp", "attn_cp", "attention_tp", "moe_dp", "moe_ep", "moe_tp", "pp"; "" for attn_dp).
[[nodiscard]] std::string_view sglang_group_name(GroupFamily family);
/// Parses a family key; throws paratwin::Error for an unknown one.
[[nodiscard]] GroupFamily parse_family(std::string_view key);
[[nodiscard]] constexpr int family_index(GroupFamily family) {
  return static_cast<int>(family);
}

/// One process group: its family, its index within the family (SGLang's creation order) and its ranks, in
/// group-rank order (ranks[i] has position i in the group).
struct RankGroup {
  GroupFamily family = GroupFamily::kTp;
  int index = 0;
  std::vector<int> ranks;
  friend bool operator==(const RankGroup&, const RankGroup&) = default;
};

/// Every family's groups, as plain data (also what the invariant checker reads, so hand-made tables can be checked).
struct GroupTable {
  std::array<std::vector<RankGroup>, kFamilyCount> families;
  [[nodiscard]] const std::vector<RankGroup>& of(GroupFamily family) const {
    return families[static_cast<std::size_t>(family_index(family))];
  }
  [[nodiscard]] std::vector<RankGroup>& of(GroupFamily family) {
    return families[static_cast<std::size_t>(family_index(family))];
  }
};

/// A rank's coordinates. Each `*_rank` is the rank's position in its group of that family.
struct RankCoords {
  int rank = 0;
  int tp_rank = 0, pp_rank = 0;
  int attn_dp_rank = 0, attn_cp_rank = 0, attn_tp_rank = 0;
  int moe_dp_rank = 0, moe_ep_rank = 0, moe_tp_rank = 0;
  friend bool operator==(const RankCoords&, const RankCoords&) = default;
};

/// The layout of one SGLang world (tp × pp ranks). Construction validates the structure (throws paratwin::Error)
/// and then checks every invariant (throws paratwin::InternalError: a paratwin bug).
class RankLayout {
 public:
  explicit RankLayout(const ParallelConfig& config);

  [[nodiscard]] const ParallelConfig& config() const { return config_; }
  [[nodiscard]] int world_size() const { return config_.world(); }
  [[nodiscard]] const GroupTable& table() const { return table_; }
  [[nodiscard]] const std::vector<RankGroup>& groups(GroupFamily family) const { return table_.of(family); }
  /// The group of `family` that holds `rank`.
  [[nodiscard]] const RankGroup& group_of(GroupFamily family, int rank) const;
  /// Index (within its family) of the group of `family` that holds `rank`.
  [[nodiscard]] int group_index_of(GroupFamily family, int rank) const;
  [[nodiscard]] const RankCoords& coords(int rank) const;
  /// Size of the groups of `family` (all groups of a family have one size).
  [[nodiscard]] int group_size(GroupFamily family) const;
  /// SGLang's aliasing rule: the family's groups are the TP communicator itself (size == tp, or MOE_DP aliased
  /// to ATTN_CP whose size is tp). The TP family aliases itself trivially; PP and attn_dp never alias.
  [[nodiscard]] bool aliases_tp(GroupFamily family) const;
  /// Under MoeDpRule::kAliasAttnCpWhenLarger with attn_cp > moe_dp: MOE_DP is the ATTN_CP group object.
  [[nodiscard]] bool moe_dp_is_attn_cp() const { return moe_dp_is_attn_cp_; }

 private:
  ParallelConfig config_;
  GroupTable table_;
  std::vector<RankCoords> coords_;
  // group_of_[family][rank] = index of the group holding rank.
  std::array<std::vector<int>, kFamilyCount> group_of_;
  bool moe_dp_is_attn_cp_ = false;
};

/// Builds the group table of `config` (structure must be valid) without running the invariant checker.
[[nodiscard]] GroupTable build_group_table(const ParallelConfig& config);

/// SGLang's rank formulas (sglang-parallel-state.md §1.2), independent of the group construction, for checks.
[[nodiscard]] RankCoords sglang_rank_formulas(const ParallelConfig& config, int rank);

}  // namespace paratwin
