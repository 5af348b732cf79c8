#pragma once
/// SGLang's own support rules (ServerArgs checks), separate from paratwin's structural rules: a configuration can
/// be structurally sound yet refused by a given SGLang version. Reported as warnings, or errors under
/// --strict-sglang, each naming the rule and the versions that have it.

#include <string>
#include <string_view>
#include <vector>

#include "topology/parallel_config.hpp"

namespace paratwin {

/// SGLang versions whose ServerArgs rules paratwin knows, oldest first.
enum class SglangVersion {
  kPr17213Merge,  ///< main at the PR #17213 merge, 8b4c3649 (2026-02-13)
  kPr19548,       ///< main after PR #19548, 289cbcf4 (2026-03-17): PP allowed with attention CP
  kPr22003,       ///< main after PR #22003 (2026-04): attn_cp != moe_dp only when moe_dp == 1
};

/// "PR #17213 merge (8b4c3649, 2026-02-13)" and so on.
[[nodiscard]] std::string_view describe(SglangVersion version);
/// Parses "17213", "19548", "22003" (also "merge" and "latest"); throws paratwin::Error otherwise.
[[nodiscard]] SglangVersion parse_sglang_version(std::string_view text);

/// One SGLang rule that a configuration breaks.
struct SglangRuleViolation {
  std::string rule;                        ///< short id, e.g. "attn-cp-requires-pp1"
  std::string message;                     ///< flags, values, the rule and the versions that enforce it
  std::vector<SglangVersion> enforced_by;  ///< the versions that reject the configuration for this rule
  bool informational = false;              ///< SGLang adjusts rather than rejects (e.g. turns DP-attention off)
};

/// Every SGLang rule `config` breaks in any known version (structurally valid configs only).
[[nodiscard]] std::vector<SglangRuleViolation> check_sglang_rules(const ParallelConfig& config);

/// True when `violation` makes `version` reject the configuration.
[[nodiscard]] bool rejects(const SglangRuleViolation& violation, SglangVersion version);

}  // namespace paratwin
