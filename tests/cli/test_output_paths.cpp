#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

using test::run_cli;

// A command given an output file it could not write stops before its work, with one error naming the option, the
// path and what is wrong, and prints nothing else.
void check_refused(const std::vector<std::string>& args, const std::string& message) {
  const auto r = run_cli(args);
  INFO(r.err);
  CHECK(r.exit_code == cli::kExitUserError);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains(message));
}

TEST_CASE("check_output_path passes a writable file or no file, and names the option of any other", "[cli]") {
  CHECK_NOTHROW(cli::check_output_path("--json", ""));
  CHECK_NOTHROW(cli::check_output_path("--json", "relative-file.json"));  // the working folder
  CHECK_NOTHROW(cli::check_output_path("--json", "/tmp/paratwin-output-path-test.json"));
  CHECK_THROWS_WITH(cli::check_output_path("--json", "/nonexistent-dir/x.json"),
                    Catch::Contains("--json /nonexistent-dir/x.json: the folder '/nonexistent-dir' does not exist"));
  CHECK_THROWS_WITH(cli::check_output_path("--out", "/tmp"), Catch::Contains("--out /tmp: it is a directory"));
}

TEST_CASE("schedule and compare refuse an output file in a missing folder before their work", "[cli]") {
  check_refused({"schedule", "--model", "llama-3.1-8b", "--prompt-len", "4096", "--out", "/nonexistent-dir/s.json"},
                "--out /nonexistent-dir/s.json: the folder '/nonexistent-dir' does not exist");
  // compare checks its outputs before reading the traces (which do not exist either).
  check_refused({"compare", "a.json", "b.json", "--csv", "/nonexistent-dir/c.csv"}, "--csv /nonexistent-dir/c.csv");
  check_refused({"compare", "a.json", "b.json", "--json", "/tmp"}, "--json /tmp: it is a directory");
}

#ifdef PARATWIN_HAVE_SIM
TEST_CASE("sim, bench --simulate and calibrate refuse an output file in a missing folder before their work", "[cli]") {
  check_refused({"sim", "--model", "llama-3.1-8b", "--prompt-len", "4096", "--trace", "/nonexistent-dir/t.json"},
                "--trace /nonexistent-dir/t.json");
  check_refused({"bench", "--simulate", "--gpus", "2", "--out", "/nonexistent-dir/b.json"},
                "--out /nonexistent-dir/b.json");
  check_refused({"calibrate", "a.json", "-o", "/nonexistent-dir/c.yaml"}, "--output /nonexistent-dir/c.yaml");
}
#endif

}  // namespace
}  // namespace paratwin
