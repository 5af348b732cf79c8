// `paratwin bench` without GPUs: the simulated sweep writes a trace of every op; bad sweeps are one clear error that
// writes nothing (the measured sweep itself runs in the GPU tests' device scripts).
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "cli/command.hpp"
#include "models/bench_schedule.hpp"
#include "models/schedule_json.hpp"
#include "tests/cli/cli_test_util.hpp"
#include "traces/trace.hpp"

using namespace paratwin;
using namespace paratwin::test;
namespace fs = std::filesystem;

namespace {

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / fmt::format("paratwin-bench-test-{}-{}", ::getpid(), name);
}

}  // namespace

#ifdef PARATWIN_HAVE_SIM
TEST_CASE("bench --simulate writes a trace of every op of the sweep with its schedule hash", "[cli][bench]") {
  const auto out = temp_path("sim.json");
  const auto r = run_cli({"bench", "--simulate", "--gpus", "2", "--max-bytes", "65536", "--out", out.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto trace = read_chrome_trace_file(out.string());
  BenchScheduleOptions sweep;
  sweep.gpus = 2;
  sweep.max_bytes = 65536;
  const auto schedule = build_bench_schedule(sweep);
  std::size_t ops = 0;
  for (const auto& rank : schedule.ranks) ops += rank.size();
  CHECK(trace.events.size() == ops);
  CHECK(trace.meta.backend == "sim");
  CHECK(trace.meta.schedule_hash == schedule_hash(schedule));
  CHECK(r.out.find("busbw GB/s") != std::string::npos);
  // fp8 kernels run against the fp8 peak: their best rates are rows of their own.
  CHECK(r.out.find("\n  gemm  ") != std::string::npos);
  CHECK(r.out.find("\n  gemm (fp8)  ") != std::string::npos);
  CHECK(r.out.find("\n  grouped_gemm (fp8)  ") != std::string::npos);
  fs::remove(out);
}
#endif

TEST_CASE("bench with a bad sweep fails clearly and writes nothing", "[cli][bench]") {
  const auto out = temp_path("bad.json");
  auto r = run_cli({"bench", "--gpus", "2", "--min-bytes", "100", "--out", out.string()});
  CHECK(r.exit_code == cli::kExitUserError);
  CHECK(r.err.find("--min-bytes 100") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  r = run_cli({"bench", "--simulate", "--gpus", "6", "--out", out.string()});
  CHECK(r.exit_code == cli::kExitUserError);
  CHECK(r.err.find("--gpus 6") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  CHECK(run_cli({"bench", "--simulate", "--gpus", "2"}).exit_code != 0);  // --out is required
}
