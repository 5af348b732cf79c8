#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"

namespace paratwin {
namespace {

using test::run_cli;

// Every command that takes the workload flags rejects an out-of-range prompt length or batch with the flag's name and
// its rule, before any other check sees the value (the memory estimate used to, naming its own fields instead).
void check_workload_errors(const std::string& command) {
  const std::vector<std::string> common = {command, "--model", "llama-3.1-8b"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  SECTION(command + ": a negative --prompt-len") {
    const auto r = with({"--prompt-len", "-5"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::Contains("--prompt-len -5 is invalid") && Catch::Contains("between 1 and"));
  }
  SECTION(command + ": a zero --batch") {
    const auto r = with({"--prompt-len", "4096", "--batch", "0"});
    CHECK(r.exit_code == cli::kExitUserError);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::Contains("--batch 0 is invalid"));
  }
}

TEST_CASE("schedule names --prompt-len and --batch when they are out of range", "[cli][schedule]") {
  check_workload_errors("schedule");
}

#ifdef PARATWIN_HAVE_SIM
TEST_CASE("sim names --prompt-len and --batch when they are out of range", "[cli][sim]") {
  check_workload_errors("sim");
}
#endif

}  // namespace
}  // namespace paratwin
