// `paratwin compare` and `paratwin calibrate` end to end, on traces the simulator writes.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.hpp"
#include "tests/cli/cli_test_util.hpp"
#include "tests/traces/calibration_test_data.hpp"
#include "traces/trace.hpp"

using namespace paratwin::test;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("paratwin_cli_compare_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

#ifdef PARATWIN_HAVE_SIM
std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A simulated Llama-3.1-8B CP=2 × TP=2 prefill of two layers.
paratwin::Trace simulated_trace(const fs::path& dir, const std::string& cp = "2") {
  const fs::path path = dir / ("sim_cp" + cp + ".json");
  const auto r = run_cli({"sim", "--model", "llama-3.1-8b", "--cluster", "h200-sxm", "--nodes", "1", "--tp-size", "2",
                          "--attn-cp-size", cp, "--prompt-len", "8192", "--layers", "2", "--trace", path.string()});
  REQUIRE(r.exit_code == 0);
  return paratwin::read_chrome_trace_file(path.string());
}

// The same schedule "measured" 10 % slower everywhere: every time × 1.1.
std::string slower_copy(paratwin::Trace trace, const fs::path& path) {
  trace.meta.backend = "cuda";
  for (auto& e : trace.events) {
    e.start_s *= 1.1;
    e.end_s *= 1.1;
  }
  paratwin::write_chrome_trace_file(trace, path.string());
  return path.string();
}
#endif

}  // namespace

#ifdef PARATWIN_HAVE_SIM
TEST_CASE("compare reports the known error of a uniformly slower measurement", "[cli][compare]") {
  const fs::path dir = fresh_dir("known");
  const paratwin::Trace sim = simulated_trace(dir);
  const std::string predicted = (dir / "sim_cp2.json").string();
  const std::string measured = slower_copy(sim, dir / "measured.json");
  const auto r =
      run_cli({"compare", predicted, measured, "--csv", (dir / "c.csv").string(), "--json", (dir / "c.json").string()});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("End to end:") && Catch::Contains("relative error -9.09%"));
  CHECK_THAT(r.out, Catch::Contains("the two critical paths are identical"));
  const auto json = nlohmann::json::parse(read_text(dir / "c.json"));
  CHECK(json.at("end_to_end").at("relative_error").get<double>() == Approx(1 / 1.1 - 1).epsilon(1e-9));
  for (const auto& kind : json.at("by_kind")) {
    CHECK(kind.at("stats").at("median").get<double>() == Approx(1 / 1.1 - 1).epsilon(1e-6));
  }
  CHECK(json.at("collectives").size() > 0);
  const std::string csv = read_text(dir / "c.csv");
  CHECK_THAT(csv, Catch::StartsWith("section,key,rank,op,"));
  // No temporary file left next to the outputs.
  for (const auto& entry : fs::directory_iterator(dir)) {
    CHECK(entry.path().filename().string().find("tmp") == std::string::npos);
  }
}

TEST_CASE("compare --tolerance exits with code 3 after printing the report", "[cli][compare]") {
  const fs::path dir = fresh_dir("tolerance");
  const paratwin::Trace sim = simulated_trace(dir);
  const std::string predicted = (dir / "sim_cp2.json").string();
  const std::string measured = slower_copy(sim, dir / "measured.json");
  const auto over = run_cli({"compare", predicted, measured, "--tolerance", "0.05"});
  CHECK(over.exit_code == paratwin::cli::kExitToleranceExceeded);
  CHECK_THAT(over.out, Catch::Contains("End to end:"));
  CHECK_THAT(over.err, Catch::Contains("over the tolerance 5.00%") && Catch::Contains("end to end"));
  const auto within = run_cli({"compare", predicted, measured, "--tolerance", "0.1"});
  CHECK(within.exit_code == 0);
  CHECK_THAT(within.out, Catch::Contains("Within tolerance 10.00%"));
  const auto self = run_cli({"compare", predicted, predicted, "--tolerance", "0"});
  CHECK(self.exit_code == 0);
}

TEST_CASE("compare refuses traces of different schedules", "[cli][compare]") {
  const fs::path dir = fresh_dir("schedules");
  (void)simulated_trace(dir, "2");
  (void)simulated_trace(dir, "1");
  const auto r = run_cli({"compare", (dir / "sim_cp2.json").string(), (dir / "sim_cp1.json").string()});
  CHECK(r.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(r.err, Catch::Contains("different schedules"));
}

TEST_CASE("compare --plots draws the three pictures with matplotlib", "[cli][compare][plots]") {
  // Not skipped without matplotlib: scripts/install-deps.sh installs python3-matplotlib, so its absence is a failure.
  const fs::path dir = fresh_dir("plots");
  const paratwin::Trace sim = simulated_trace(dir);
  const std::string measured = slower_copy(sim, dir / "measured.json");
  const fs::path plots = dir / "pictures";
  const auto r = run_cli({"compare", (dir / "sim_cp2.json").string(), measured, "--plots", plots.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(plots)) {
    ++files;
    CHECK(entry.path().extension() == ".png");
    CHECK(fs::file_size(entry.path()) > 1000);
  }
  CHECK(files == 3);
  CHECK(fs::exists(plots / "scatter_by_kind.png"));
  CHECK(fs::exists(plots / "error_by_size.png"));
  // The timeline is of the measured critical rank, named in the report.
  CHECK_THAT(r.out, Catch::Contains("Pictures in") && Catch::Contains("timeline_rank"));
  const auto bad_rank =
      run_cli({"compare", (dir / "sim_cp2.json").string(), measured, "--plots", plots.string(), "--rank", "99"});
  CHECK(bad_rank.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(bad_rank.err, Catch::Contains("--rank 99"));
}

TEST_CASE("calibrate fits a measured trace and sim accepts the file", "[cli][calibrate]") {
  const fs::path dir = fresh_dir("calibrate");
  const paratwin::FitInputs in = test_fit_inputs();
  Noise noise(0.02, 11);
  paratwin::Trace t = empty_measured_trace();
  add_collective_sweep(t, 3e-6, 300e9, noise);
  add_gemm_sweep(
      t, [](double m) { return 0.3 + 0.05 * std::log2(m / 64); }, in, noise);
  const std::string measured = (dir / "bench.json").string();
  paratwin::write_chrome_trace_file(t, measured);
  const std::string yaml = (dir / "cal.yaml").string();
  const auto r = run_cli({"calibrate", measured, "-o", yaml, "--holdout"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("links.nvlink: latency") && Catch::Contains("Hold-out error"));
  const std::string text = read_text(yaml);
  CHECK_THAT(text, Catch::Contains("# Hold-out error") && Catch::Contains("nvlink_graph_fraction") &&
                       Catch::Contains("gemm:"));
  const std::vector<std::string> sim_flags = {
      "sim",       "--model", "llama-3.1-8b", "--cluster", "h200-sxm", "--nodes", "1",
      "--tp-size", "2",       "--prompt-len", "4096",      "--layers", "1",       "--calibration"};
  auto sim = sim_flags;
  sim.push_back(yaml);
  const auto nccl_run = run_cli(sim);
  INFO(nccl_run.err);
  CHECK(nccl_run.exit_code == 0);
  const std::string ab_yaml = (dir / "cal_ab.yaml").string();
  REQUIRE(run_cli({"calibrate", measured, "-o", ab_yaml, "--sim-mode", "alpha-beta"}).exit_code == 0);
  CHECK_THAT(read_text(ab_yaml), Catch::Contains("links:\n  nvlink: {latency_us: "));
  sim.back() = ab_yaml;
  sim.push_back("--alpha-beta");
  const auto ab_run = run_cli(sim);
  INFO(ab_run.err);
  CHECK(ab_run.exit_code == 0);
  const auto bad_mode = run_cli({"calibrate", measured, "-o", ab_yaml, "--sim-mode", "ring"});
  CHECK(bad_mode.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(bad_mode.err, Catch::Contains("--sim-mode 'ring'"));
  // The launch overhead fitted: printed, written with its origin, and read back by the sim.
  const std::string fitted_yaml = (dir / "cal_fitted.yaml").string();
  const auto fitted = run_cli({"calibrate", measured, "-o", fitted_yaml, "--fit-launch-overhead"});
  INFO(fitted.err);
  REQUIRE(fitted.exit_code == 0);
  CHECK_THAT(fitted.out, Catch::Contains("compute.launch_overhead_us: "));
  CHECK_THAT(read_text(fitted_yaml), Catch::Contains("launch_overhead_us: ") && Catch::Contains("# fitted"));
  sim.pop_back();
  sim.back() = fitted_yaml;
  const auto fitted_run = run_cli(sim);
  INFO(fitted_run.err);
  CHECK(fitted_run.exit_code == 0);
  const auto both = run_cli({"calibrate", measured, "-o", fitted_yaml, "--fit-launch-overhead",
                             "--launch-overhead-us", "2"});
  CHECK(both.exit_code != 0);  // a CLI11 parse error, with its own code
  CHECK_THAT(both.err, Catch::Contains("--fit-launch-overhead") && Catch::Contains("--launch-overhead-us"));
}

#endif

TEST_CASE("compare and calibrate reject bad input with one clear error and write nothing", "[cli][compare]") {
  const fs::path dir = fresh_dir("bad");
  paratwin::Trace t = empty_measured_trace();
  add_call(t, "all_gather", 2, 1 << 20, 1e-4, false);
  const std::string good = (dir / "good.json").string();
  paratwin::write_chrome_trace_file(t, good);
  const std::string csv = (dir / "out.csv").string();

  const auto missing = run_cli({"compare", (dir / "none.json").string(), good, "--csv", csv});
  CHECK(missing.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(missing.err, Catch::Contains("none.json"));

  std::ofstream(dir / "text.json") << "this is not json";
  const auto not_json = run_cli({"compare", (dir / "text.json").string(), good, "--csv", csv});
  CHECK(not_json.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(not_json.err, Catch::Contains("text.json") && Catch::Contains("not valid JSON"));

  paratwin::Trace empty = t;
  empty.events.clear();
  paratwin::write_chrome_trace_file(empty, (dir / "empty.json").string());
  const auto no_events = run_cli({"compare", (dir / "empty.json").string(), good, "--csv", csv});
  CHECK(no_events.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(no_events.err, Catch::Contains("empty.json has no events"));

  const auto negative = run_cli({"compare", good, good, "--tolerance", "-0.1", "--csv", csv});
  CHECK(negative.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(negative.err, Catch::Contains("--tolerance -0.1"));

  std::ofstream(dir / "a_file") << "x";
  const auto plots_under_file =
      run_cli({"compare", good, good, "--plots", (dir / "a_file" / "pictures").string(), "--csv", csv});
  CHECK(plots_under_file.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(plots_under_file.err, Catch::Contains("--plots"));

  std::ofstream(dir / "foreign.json") << R"({"traceEvents": [{"ph": "X", "name": "k", "pid": 0, "tid": 0, "ts": 1,
                                             "dur": 2}]})";
#ifdef PARATWIN_HAVE_SIM
  const auto calibrate_missing = run_cli({"calibrate", (dir / "none.json").string(), "-o", (dir / "c.yaml").string()});
  CHECK(calibrate_missing.exit_code == paratwin::cli::kExitUserError);
  const auto calibrate_foreign =
      run_cli({"calibrate", (dir / "foreign.json").string(), "-o", (dir / "c.yaml").string()});
  CHECK(calibrate_foreign.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(calibrate_foreign.err, Catch::Contains("not a paratwin trace"));
  const auto calibrate_bad_overhead =
      run_cli({"calibrate", good, "-o", (dir / "c.yaml").string(), "--launch-overhead-us", "-1"});
  CHECK(calibrate_bad_overhead.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(calibrate_bad_overhead.err, Catch::Contains("--launch-overhead-us -1"));
#endif
  const auto compare_foreign = run_cli({"compare", (dir / "foreign.json").string(), good});
  CHECK(compare_foreign.exit_code == paratwin::cli::kExitUserError);
  CHECK_THAT(compare_foreign.err, Catch::Contains("not a paratwin trace"));

  CHECK_FALSE(fs::exists(csv));
  CHECK_FALSE(fs::exists(dir / "c.yaml"));
}
