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

TEST_CASE("run rejects an unknown --moe-gemm, naming the flag and the choices, before touching a GPU", "[cli][run]") {
  const auto r = run_cli({"run", "--model", "qwen3-30b-a3b", "--prompt-len", "128", "--moe-gemm", "triton"});
  CHECK(r.exit_code == paratwin::cli::kExitUserError);
  CHECK(r.err.find("--moe-gemm 'triton' is unknown: use auto, cublas-streams, hopper-kernel") != std::string::npos);
}

TEST_CASE("run --help lists --moe-gemm and its choices", "[cli][run]") {
  const auto r = run_cli({"run", "--help"});
  CHECK(r.exit_code == 0);
  const auto& help = r.out;
  CHECK(help.find("--moe-gemm") != std::string::npos);
  for (const char* choice : {"auto", "cublas-streams", "hopper-kernel"}) CHECK(help.find(choice) != std::string::npos);
}
