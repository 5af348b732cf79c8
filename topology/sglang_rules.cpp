#include "topology/sglang_rules.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "topology/error.hpp"

namespace paratwin {
namespace {

constexpr SglangVersion kAllVersions[] = {SglangVersion::kPr17213Merge, SglangVersion::kPr19548,
                                          SglangVersion::kPr22003};

std::string versions_text(const std::vector<SglangVersion>& versions) {
  if (versions.size() == std::size(kAllVersions)) return "every SGLang version paratwin knows (PR #17213 merge onward)";
  std::vector<std::string_view> names;
  for (const auto v : versions) names.push_back(describe(v));
  return fmt::format("{}", fmt::join(names, "; "));
}

void add(std::vector<SglangRuleViolation>& out, std::string rule, std::string what, std::vector<SglangVersion> by,
         bool informational = false) {
  std::string message =
      fmt::format("{} [{}; {}: {}]", what, rule, informational ? "adjusted by" : "rejected by", versions_text(by));
  out.push_back({std::move(rule), std::move(message), std::move(by), informational});
}

}  // namespace

std::string_view describe(SglangVersion version) {
  switch (version) {
    case SglangVersion::kPr17213Merge:
      return "PR #17213 merge (8b4c3649, 2026-02-13)";
    case SglangVersion::kPr19548:
      return "after PR #19548 (289cbcf4, 2026-03-17)";
    case SglangVersion::kPr22003:
      return "after PR #22003 (2026-04)";
  }
  return "?";
}

SglangVersion parse_sglang_version(std::string_view text) {
  if (text == "17213" || text == "merge") return SglangVersion::kPr17213Merge;
  if (text == "19548") return SglangVersion::kPr19548;
  if (text == "22003" || text == "latest") return SglangVersion::kPr22003;
  fail("--sglang-version '{}' is unknown: use 17213 (or merge), 19548, or 22003 (or latest)", text);
}

bool rejects(const SglangRuleViolation& violation, SglangVersion version) {
  return !violation.informational &&
         std::find(violation.enforced_by.begin(), violation.enforced_by.end(), version) != violation.enforced_by.end();
}

// The rules of ServerArgs._handle_data_parallelism / _handle_context_parallelism (sglang-parallel-state.md §1.4).
std::vector<SglangRuleViolation> check_sglang_rules(const ParallelConfig& c) {
  std::vector<SglangRuleViolation> out;
  const std::vector<SglangVersion> all(std::begin(kAllVersions), std::end(kAllVersions));
  if (c.enable_dp_attention && c.dp_size == 1) {
    add(out, "dp-attention-needs-dp",
        "--enable-dp-attention with --dp-size 1: SGLang turns DP-attention off (dp_size == 1)", all, true);
  }
  if (c.attn_cp_size > 1) {
    // SGLang checks the raw dp_size here, even when DP-attention is off.
    if (c.tp_size % (c.dp_size * c.attn_cp_size) != 0) {
      add(out, "attn-cp-tp-divisible-by-dp-cp",
          fmt::format("--tp-size {} is not divisible by --dp-size {} × --attn-cp-size {} (SGLang uses the raw dp_size "
                      "even without --enable-dp-attention)",
                      c.tp_size, c.dp_size, c.attn_cp_size),
          all);
    }
    if (c.pp_size != 1) {
      add(out, "attn-cp-requires-pp1",
          fmt::format("--attn-cp-size {} with --pp-size {}: 'PP is not supported with context parallelism'",
                      c.attn_cp_size, c.pp_size),
          {SglangVersion::kPr17213Merge});
    }
  }
  if (c.moe_dp_size > 1) {
    // tp % moe_dp == 0 and ep × moe_dp ≤ tp are structural rules already (structural_errors).
    if (c.pp_size != 1) {
      add(out, "moe-dp-requires-pp1",
          fmt::format("--moe-dp-size {} with --pp-size {}: MoE data parallelism needs pp == 1", c.moe_dp_size,
                      c.pp_size),
          all);
    }
    if (c.ep_size > 1 && c.ep_size * c.moe_dp_size != c.tp_size) {
      add(out, "moe-dp-ep-fills-tp",
          fmt::format(
              "--ep-size {} × --moe-dp-size {} = {} must equal --tp-size {} when both are > 1 (moe_tp must be 1)",
              c.ep_size, c.moe_dp_size, c.ep_size * c.moe_dp_size, c.tp_size),
          all);
    }
    if (c.attn_cp_size != c.moe_dp_size) {
      add(out, "moe-dp-equals-attn-cp",
          fmt::format("--attn-cp-size {} differs from --moe-dp-size {}: only allowed when moe_dp == 1", c.attn_cp_size,
                      c.moe_dp_size),
          {SglangVersion::kPr22003});
    }
  }
  return out;
}

}  // namespace paratwin
