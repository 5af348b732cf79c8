#pragma once
/// The parallel configuration, in SGLang's server-argument semantics (PR #17213, merge 8b4c3649).
///
/// `tp_size` is the width of one pipeline stage, not the "real" tensor-parallel degree: attention factors those
/// ranks as (attn_dp, attn_cp, attn_tp) and MoE as (moe_dp, ep, moe_tp), innermost last. world = tp × pp.
/// See shared docs `sglang-parallel-state.md` §1–3 and topology/README.md.

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace paratwin {

/// How the MOE_DP group is formed (the merged rule, or the later upstream one of PR #22003).
enum class MoeDpRule {
  kMerged,                 ///< MOE_DP = {B + c + j·(moe_tp·ep)} per stage; aliased to TP when moe_dp == tp.
  kAliasAttnCpWhenLarger,  ///< newest upstream: when attn_cp > moe_dp, MOE_DP is the ATTN_CP group itself.
};

/// The SGLang server arguments that shape process groups, with SGLang's defaults.
struct ParallelConfig {
  int tp_size = 1;                   ///< --tp-size/--tp: ranks per pipeline stage
  int pp_size = 1;                   ///< --pp-size: pipeline stages
  int dp_size = 1;                   ///< --dp-size/--dp
  bool enable_dp_attention = false;  ///< --enable-dp-attention: dp splits the attention side of a stage
  int attn_cp_size = 1;              ///< --attn-cp-size: attention context-parallel degree
  int ep_size = 1;                   ///< --ep-size/--ep: MoE expert-parallel degree
  int moe_dp_size = 1;               ///< --moe-dp-size: MoE data-parallel degree ("MOE_CP" in the PR text)
  std::optional<int> world_size;     ///< --world-size: if given, must equal tp × pp
  MoeDpRule moe_dp_rule = MoeDpRule::kMerged;

  /// Attention data-parallel degree: dp_size under DP-attention, else 1 (SGLang's model_runner).
  [[nodiscard]] int attn_dp_size() const { return enable_dp_attention ? dp_size : 1; }
  /// Attention tensor-parallel degree, tp / (attn_dp · attn_cp). Valid only after validation.
  [[nodiscard]] int attn_tp_size() const { return tp_size / (attn_dp_size() * attn_cp_size); }
  /// MoE tensor-parallel degree, tp / (moe_dp · ep). Valid only after validation.
  [[nodiscard]] int moe_tp_size() const { return tp_size / (moe_dp_size * ep_size); }
  /// Ranks in one SGLang world (one replica): tp × pp.
  [[nodiscard]] int world() const { return tp_size * pp_size; }
  /// Independent replicas launched by plain data parallelism (dp without DP-attention): each is a whole world.
  [[nodiscard]] int replicas() const { return enable_dp_attention ? 1 : dp_size; }

  /// The SGLang command-line flags that reproduce this configuration (defaults omitted).
  [[nodiscard]] std::string to_flags() const;

  friend bool operator==(const ParallelConfig&, const ParallelConfig&) = default;
};

/// Calls visit(key, field) for the seven SGLang server arguments that define the layout, tp_size … moe_dp_size (every
/// field but world_size and moe_dp_rule, which writers treat apart), keyed by their names in SGLang's ServerArgs: the
/// one list that the JSON writers and reader of a ParallelConfig and the size check of structural_errors share.
/// `Config` is const ParallelConfig to read the fields, ParallelConfig to assign them.
template <class Config, class Visit>
requires std::is_same_v<std::remove_const_t<Config>, ParallelConfig>
void for_each_layout_argument(Config& config, Visit&& visit) {
  visit("tp_size", config.tp_size);
  visit("pp_size", config.pp_size);
  visit("dp_size", config.dp_size);
  visit("enable_dp_attention", config.enable_dp_attention);
  visit("attn_cp_size", config.attn_cp_size);
  visit("ep_size", config.ep_size);
  visit("moe_dp_size", config.moe_dp_size);
}

/// Largest world paratwin lays out; larger requests are user errors, not allocations.
inline constexpr int kMaxWorldSize = 1 << 20;

/// Checks the structural rules (sizes ≥ 1, divisibility, world = tp × pp) and throws paratwin::Error naming the
/// flags, their values and the rule that the first broken one violates.
void validate_structure(const ParallelConfig& config);

/// The structural errors of `config`, all of them, each naming flags, values and rule; empty when valid.
[[nodiscard]] std::vector<std::string> structural_errors(const ParallelConfig& config);

}  // namespace paratwin
