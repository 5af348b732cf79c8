#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::test;
using nlohmann::json;

TEST_CASE("layout --json of the DeepSeek-V3.2 CP layout spells every family out", "[cli][layout]") {
  const auto r = run_cli({"layout", "--tp-size", "8", "--attn-cp-size", "8", "--json"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const auto doc = json::parse(r.out);
  CHECK(doc["world_size"] == 8);
  const auto all = json::array({json::array({0, 1, 2, 3, 4, 5, 6, 7})});
  CHECK(doc["groups"]["tp"] == all);
  CHECK(doc["groups"]["attn_cp"] == all);
  CHECK(doc["groups"]["moe_tp"] == all);
  CHECK(doc["groups"]["attn_tp"].size() == 8);
  CHECK(doc["groups"]["attn_tp"][3] == json::array({3}));
  for (const auto* key : {"pp", "moe_ep", "moe_dp"}) CHECK(doc["groups"][key].size() == 8);
  REQUIRE(doc["ranks"].size() == 8);
  const auto& r5 = doc["ranks"][5];
  for (const auto* key : {"rank", "node", "gpu", "tp_rank", "pp_rank", "attn_dp_rank", "attn_cp_rank", "attn_tp_rank",
                          "moe_dp_rank", "moe_ep_rank", "moe_tp_rank"}) {
    CHECK(r5.contains(key));
  }
  CHECK(r5["attn_cp_rank"] == 5);
  CHECK(r5["gpu"] == 5);
  CHECK(doc["warnings"].empty());
  CHECK(doc["aliases"]["attn_cp"] == "= tp");
}

TEST_CASE("layout text shows groups, ranks, spans and warnings", "[cli][layout]") {
  const auto r = run_cli({"layout", "--tp", "8", "--pp-size", "2", "--attn-cp-size", "2"});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("attention_tp") && Catch::Contains("[0,4]") && Catch::Contains("nvlink") &&
                        Catch::Contains("attn-cp-requires-pp1"));
}

TEST_CASE("layout places ranks across nodes and reports network spans", "[cli][layout]") {
  const auto r = run_cli({"layout", "--tp-size", "16", "--cluster", "h200-sxm", "--nodes", "2", "--json"});
  REQUIRE(r.exit_code == 0);
  const auto doc = json::parse(r.out);
  CHECK(doc["ranks"][9]["node"] == 1);
  CHECK(doc["ranks"][9]["gpu"] == 1);
  CHECK(doc["spans"]["tp"][0]["single_nvlink_domain"] == false);
}

TEST_CASE("layout --help documents every flag", "[cli][layout]") {
  const auto r = run_cli({"layout", "--help"});
  CHECK(r.exit_code == 0);
  for (const auto* flag : {"--tp-size", "--tp", "--pp-size", "--dp-size", "--dp", "--enable-dp-attention",
                           "--attn-cp-size", "--ep-size", "--ep", "--moe-dp-size", "--world-size", "--moe-dp-rule",
                           "--sglang-version", "--strict-sglang", "--cluster", "--nodes", "--json"}) {
    CHECK_THAT(r.out, Catch::Contains(flag));
  }
}

TEST_CASE("bad input gives one clear error and a non-zero exit code", "[cli][layout]") {
  SECTION("a non-divisible size names the flags and the rule") {
    const auto r = run_cli({"layout", "--tp-size", "8", "--attn-cp-size", "3"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::Contains("--attn-cp-size 3") && Catch::Contains("divisible"));
  }
  SECTION("a value that is not a number") {
    const auto r = run_cli({"layout", "--tp-size", "eight"});
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains("--tp-size"));
  }
  SECTION("an unknown flag") {
    const auto r = run_cli({"layout", "--tensor-size", "8"});
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains("--tensor-size"));
  }
  SECTION("--strict-sglang turns a rule warning into an error naming the version") {
    const auto r = run_cli({"layout", "--tp-size", "8", "--pp-size", "2", "--attn-cp-size", "2", "--strict-sglang"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK_THAT(r.err, Catch::Contains("PR #17213") && Catch::Contains("PP is not supported"));
    const auto later = run_cli({"layout", "--tp-size", "8", "--pp-size", "2", "--attn-cp-size", "2", "--strict-sglang",
                                "--sglang-version", "19548"});
    CHECK(later.exit_code == 0);
  }
  SECTION("a cluster too small for the world") {
    const auto r = run_cli({"layout", "--tp-size", "16", "--nodes", "1"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK_THAT(r.err, Catch::Contains("16"));
  }
  SECTION("a cluster file that does not exist") {
    const auto r = run_cli({"layout", "--tp-size", "8", "--cluster", "/nonexistent/cluster.yaml"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK_THAT(r.err, Catch::Contains("/nonexistent/cluster.yaml"));
  }
}

TEST_CASE("write_file_atomically leaves nothing behind on failure", "[cli]") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / "paratwin_write_test";
  fs::create_directories(dir);
  const auto path = (dir / "out.json").string();
  cli::write_file_atomically(path, "hello");
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  CHECK(text == "hello");
  CHECK_THROWS_AS(cli::write_file_atomically((dir / "missing" / "x.json").string(), "x"), Error);
  CHECK_FALSE(fs::exists(dir / "missing"));
  CHECK_THROWS_AS(cli::write_file_atomically(dir.string(), "x"), Error);
  fs::remove_all(dir);
}
