// Thousands of random flag sets and cluster files thrown at the parser and validator: each must end in a layout
// (exit 0) or one clear error (non-zero exit, message on stderr, nothing on stdout), never a crash or an internal
// error.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"
#include "tests/test_sweep.hpp"
#include "topology/cluster.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

const std::vector<std::string> kFlags = {
    "--tp-size", "--tp",          "--pp-size",    "--dp-size", "--dp",          "--attn-cp-size",   "--ep-size",
    "--ep",      "--moe-dp-size", "--world-size", "--nodes",   "--moe-dp-rule", "--sglang-version", "--cluster"};
const std::vector<std::string> kValues = {"1",     "2",          "3",   "4", "8",   "16",  "0",      "-1",
                                          "64",    "2147483647", "abc", "",  "1.5", "1e3", "merged", "attn-cp-alias",
                                          "19548", "h100-sxm",   "-"};

}  // namespace

TEST_CASE("random flag sets end in a layout or one clear error", "[cli][random]") {
  std::mt19937 rng(20261128);
  int accepted = 0;
  for (int trial = 0; trial < 3000 / test::kSweepStride; ++trial) {
    std::vector<std::string> args = {"layout"};
    const int flags = std::uniform_int_distribution<int>(0, 6)(rng);
    for (int f = 0; f < flags; ++f) {
      args.push_back(kFlags[std::uniform_int_distribution<std::size_t>(0, kFlags.size() - 1)(rng)]);
      if (std::uniform_int_distribution<int>(0, 9)(rng) > 0) {
        args.push_back(kValues[std::uniform_int_distribution<std::size_t>(0, kValues.size() - 1)(rng)]);
      }
    }
    for (const auto* flag : {"--enable-dp-attention", "--strict-sglang", "--json"}) {
      if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) args.emplace_back(flag);
    }
    const auto r = run_cli(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    INFO("paratwin " << joined);
    REQUIRE(r.exit_code != cli::kExitInternalError);
    if (r.exit_code == 0) {
      REQUIRE_FALSE(r.out.empty());
      ++accepted;
    } else {
      REQUIRE(r.out.empty());
      REQUIRE_FALSE(r.err.empty());
    }
  }
  CHECK(accepted > 100 / test::kSweepStride);  // the generator does reach valid layouts
}

TEST_CASE("random cluster files end in a layout or one clear error", "[cli][random]") {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / "paratwin_random_clusters";
  fs::create_directories(dir);
  const std::string base = cluster_preset_yaml("h200-sxm");
  std::mt19937 rng(7);
  const std::string junk = "-0.5e9: []{}#\"'\n\tx";
  int accepted = 0;
  for (int trial = 0; trial < 1000 / test::kSweepStride; ++trial) {
    std::string text = base;
    const int edits = std::uniform_int_distribution<int>(0, 4)(rng);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const auto pos = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(rng);
      switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
        case 0:
          text.erase(pos, std::uniform_int_distribution<std::size_t>(1, 12)(rng));
          break;
        case 1:
          text.insert(pos, 1, junk[std::uniform_int_distribution<std::size_t>(0, junk.size() - 1)(rng)]);
          break;
        default:
          text[pos] = junk[std::uniform_int_distribution<std::size_t>(0, junk.size() - 1)(rng)];
          break;
      }
    }
    const auto path = (dir / "cluster.yaml").string();
    std::ofstream(path, std::ios::trunc) << text;
    const auto r = run_cli({"layout", "--tp-size", "8", "--attn-cp-size", "4", "--cluster", path});
    INFO(text);
    REQUIRE(r.exit_code != cli::kExitInternalError);
    if (r.exit_code == 0) {
      ++accepted;
    } else {
      REQUIRE(r.out.empty());
      REQUIRE_FALSE(r.err.empty());
    }
  }
  fs::remove_all(dir);
  CHECK(accepted > 0);
}
