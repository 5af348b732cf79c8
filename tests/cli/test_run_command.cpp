// `paratwin run` argument handling that needs no GPU (the GPU runs are in tests/gpu/).
#include <catch2/catch.hpp>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"

using namespace paratwin::test;

TEST_CASE("run rejects an unknown --instrumentation before touching a GPU", "[cli][run]") {
  const auto r = run_cli({"run", "--model", "llama-3.1-8b", "--prompt-len", "128", "--instrumentation", "sometimes"});
  CHECK(r.exit_code == paratwin::cli::kExitUserError);
  CHECK(r.err.find("--instrumentation 'sometimes'") != std::string::npos);
}

TEST_CASE("run needs --prompt-len and checks the layout like schedule does", "[cli][run]") {
  CHECK(run_cli({"run", "--model", "llama-3.1-8b"}).exit_code != 0);
  const auto r = run_cli({"run", "--model", "llama-3.1-8b", "--prompt-len", "128", "--tp-size", "3"});
  CHECK(r.exit_code == paratwin::cli::kExitUserError);
  CHECK_FALSE(r.err.empty());
}
