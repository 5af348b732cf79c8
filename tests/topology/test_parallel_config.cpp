#include <catch2/catch.hpp>

#include "tests/topology/layout_test_util.hpp"
#include "topology/error.hpp"
#include "topology/parallel_config.hpp"

using namespace paratwin;
using namespace paratwin::test;

TEST_CASE("derived sizes follow SGLang's factorization", "[config]") {
  const auto c = make_config(8, 1, 2, true, 2, 4, 2);
  CHECK(c.attn_dp_size() == 2);
  CHECK(c.attn_tp_size() == 2);
  CHECK(c.moe_tp_size() == 1);
  CHECK(c.world() == 8);
  CHECK(c.replicas() == 1);
  CHECK(make_config(8, 1, 2).attn_dp_size() == 1);  // dp without DP-attention: replicas, not attention DP
  CHECK(make_config(8, 1, 2).replicas() == 2);
}

TEST_CASE("structural errors name the flags, their values and the rule", "[config]") {
  CHECK_THROWS_WITH(validate_structure(make_config(8, 1, 1, false, 3)), Catch::Contains("--tp-size 8") &&
                                                                            Catch::Contains("--attn-cp-size 3") &&
                                                                            Catch::Contains("attn_cp × attn_tp"));
  CHECK_THROWS_WITH(validate_structure(make_config(8, 1, 3, true, 2)),
                    Catch::Contains("--dp-size 3") && Catch::Contains("attn_dp × attn_cp × attn_tp"));
  CHECK_THROWS_WITH(validate_structure(make_config(8, 1, 1, false, 1, 8, 2)),
                    Catch::Contains("--moe-dp-size 2") && Catch::Contains("--ep-size 8"));
  CHECK_THROWS_WITH(validate_structure(make_config(0)),
                    Catch::Contains("--tp-size 0") && Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(validate_structure(make_config(8, -1)), Catch::Contains("--pp-size -1"));
  auto c = make_config(8, 2);
  c.world_size = 8;
  CHECK_THROWS_WITH(validate_structure(c), Catch::Contains("--world-size 8") && Catch::Contains("tp × pp"));
  c.world_size = 16;
  CHECK_NOTHROW(validate_structure(c));
}

TEST_CASE("huge sizes are refused without overflow or allocation", "[config]") {
  CHECK_THROWS_WITH(validate_structure(make_config(1 << 30, 1 << 30)), Catch::Contains("exceeds paratwin's limit"));
  CHECK_THROWS_WITH(validate_structure(make_config(1 << 20, 2)), Catch::Contains("exceeds"));
  CHECK_NOTHROW(validate_structure(make_config(1 << 19, 2)));
}

TEST_CASE("all structural errors are collected", "[config]") {
  const auto errors = structural_errors(make_config(8, 1, 1, false, 3, 3));
  CHECK(errors.size() == 2);
}

TEST_CASE("to_flags spells SGLang flags and omits defaults", "[config]") {
  CHECK(make_config(8, 1, 1, false, 8).to_flags() == "--tp-size 8 --attn-cp-size 8");
  CHECK(make_config(8, 2, 2, true, 2, 4, 2).to_flags() ==
        "--tp-size 8 --pp-size 2 --dp-size 2 --enable-dp-attention --attn-cp-size 2 --ep-size 4 --moe-dp-size 2");
}
