#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.hpp"
#include "models/schedule_json.hpp"
#include "tests/cli/cli_test_util.hpp"

using namespace paratwin;
using namespace paratwin::test;

TEST_CASE("schedule prints per-rank op counts, FLOPs, bytes per family and memory", "[schedule][cli]") {
  const auto r = run_cli({"schedule", "--model", "deepseek-v3.2", "--tp-size", "8", "--attn-cp-size", "8",
                          "--prompt-len", "16384", "--layers", "5"});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("attn_cp GB") && Catch::Contains("TFLOP") && Catch::Contains("weights GB") &&
                        Catch::Contains("fits"));
}

TEST_CASE("schedule --out writes JSON that reads back to the same schedule", "[schedule][cli]") {
  namespace fs = std::filesystem;
  const auto path = (fs::temp_directory_path() / "paratwin_schedule_test.json").string();
  const auto r = run_cli({"schedule", "--model", "qwen3-30b-a3b", "--tp-size", "4", "--attn-cp-size", "2", "--ep-size",
                          "4", "--prompt-len", "2048", "--layers", "2", "--out", path, "--json"});
  REQUIRE(r.exit_code == 0);
  const auto summary = nlohmann::json::parse(r.out);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const auto schedule = schedule_from_json(text.str(), path);
  CHECK(summary["schedule_hash"] == schedule_hash(schedule));
  CHECK(summary["ranks"].size() == 4);
  CHECK(summary["moe_mode"] == "a2a");
  fs::remove(path);
}

TEST_CASE("schedule reports bad combinations as one clear error", "[schedule][cli]") {
  const auto r = run_cli({"schedule", "--model", "llama-3.1-8b", "--tp-size", "3", "--attn-cp-size", "3",
                          "--prompt-len", "4096", "--cp-algo", "ulysses"});
  CHECK(r.exit_code == cli::kExitUserError);
  CHECK_THAT(r.err, Catch::Contains("ulysses"));
  const auto unknown = run_cli({"schedule", "--model", "gpt-9", "--prompt-len", "10"});
  CHECK(unknown.exit_code == cli::kExitUserError);
  CHECK_THAT(unknown.err, Catch::Contains("gpt-9"));
  const auto algo = run_cli({"schedule", "--prompt-len", "10", "--cp-algo", "tree"});
  CHECK(algo.exit_code == cli::kExitUserError);
  CHECK_THAT(algo.err, Catch::Contains("--cp-algo") && Catch::Contains("allgather"));
}
