#include <catch2/catch.hpp>

#include "tests/topology/layout_test_util.hpp"
#include "topology/sglang_rules.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {
const SglangRuleViolation* find_rule(const std::vector<SglangRuleViolation>& v, const std::string& rule) {
  for (const auto& x : v) {
    if (x.rule == rule) return &x;
  }
  return nullptr;
}
}  // namespace

TEST_CASE("the two DeepSeek-V3.2 CP test configurations are accepted by every version", "[sglang]") {
  CHECK(check_sglang_rules(make_config(8, 1, 1, false, 8)).empty());
  CHECK(check_sglang_rules(make_config(8, 1, 2, true, 4, 8)).empty());
}

TEST_CASE("PP with attention CP: rejected at the merge, allowed after #19548", "[sglang]") {
  const auto v = check_sglang_rules(make_config(8, 2, 1, false, 2));
  const auto* rule = find_rule(v, "attn-cp-requires-pp1");
  REQUIRE(rule != nullptr);
  CHECK(rejects(*rule, SglangVersion::kPr17213Merge));
  CHECK_FALSE(rejects(*rule, SglangVersion::kPr19548));
  CHECK(rule->message.find("8b4c3649") != std::string::npos);
  CHECK(rule->message.find("--pp-size 2") != std::string::npos);
}

TEST_CASE("the raw dp_size counts in the CP divisibility rule even without DP-attention", "[sglang]") {
  // tp 8, dp 4 (plain replicas), cp 4: structurally fine (attn_dp = 1), but SGLang checks 8 % (4*4).
  const auto v = check_sglang_rules(make_config(8, 1, 4, false, 4));
  REQUIRE(find_rule(v, "attn-cp-tp-divisible-by-dp-cp") != nullptr);
}

TEST_CASE("moe_dp rules: ep × moe_dp must fill tp, pp must be 1", "[sglang]") {
  CHECK(find_rule(check_sglang_rules(make_config(8, 1, 1, false, 1, 2, 2)), "moe-dp-ep-fills-tp") != nullptr);
  CHECK(check_sglang_rules(make_config(8, 1, 1, false, 1, 4, 2)).size() == 1);  // only the #22003 cp == moe_dp rule
  const auto pp = check_sglang_rules(make_config(8, 2, 1, false, 2, 4, 2));
  const auto* rule = find_rule(pp, "moe-dp-requires-pp1");
  REQUIRE(rule != nullptr);
  CHECK(rejects(*rule, SglangVersion::kPr22003));
}

TEST_CASE("after #22003 attn_cp must equal moe_dp unless moe_dp is 1", "[sglang]") {
  const auto v = check_sglang_rules(make_config(8, 1, 1, false, 2, 4, 2));
  CHECK(v.empty());
  const auto w = check_sglang_rules(make_config(8, 1, 1, false, 4, 4, 2));
  const auto* rule = find_rule(w, "moe-dp-equals-attn-cp");
  REQUIRE(rule != nullptr);
  CHECK_FALSE(rejects(*rule, SglangVersion::kPr17213Merge));
  CHECK(rejects(*rule, SglangVersion::kPr22003));
}

TEST_CASE("DP-attention with dp 1 is informational", "[sglang]") {
  const auto v = check_sglang_rules(make_config(8, 1, 1, true));
  REQUIRE(v.size() == 1);
  CHECK(v[0].informational);
  CHECK_FALSE(rejects(v[0], SglangVersion::kPr17213Merge));
}

TEST_CASE("versions parse by PR number", "[sglang]") {
  CHECK(parse_sglang_version("merge") == SglangVersion::kPr17213Merge);
  CHECK(parse_sglang_version("19548") == SglangVersion::kPr19548);
  CHECK(parse_sglang_version("latest") == SglangVersion::kPr22003);
  CHECK_THROWS_WITH(parse_sglang_version("0.5"), Catch::Contains("--sglang-version"));
}
