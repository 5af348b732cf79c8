#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/cli/cli_test_util.hpp"

using paratwin::test::run_cli;
namespace fs = std::filesystem;

namespace {

// A fresh folder under the system temp folder for one test's files.
fs::path scratch(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("paratwin-plan-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read(const fs::path& path) {
  std::ifstream file(path);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

const std::vector<std::string> kSmallPlan = {"plan",
                                             "--model",
                                             "llama-3.1-8b",
                                             "--cluster",
                                             "h200-sxm",
                                             "--max-nodes",
                                             "2",
                                             "--prompt-len",
                                             "4096",
                                             "--layers",
                                             "2",
                                             "--jobs",
                                             "2",
                                             "--top",
                                             "3"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

}  // namespace

TEST_CASE("plan prints a ranked table of pasteable SGLang flags and the Pareto front", "[planner][cli]") {
  const auto dir = scratch("table");
  const auto json_path = (dir / "plan.json").string();
  const auto csv_path = (dir / "plan.csv").string();
  const auto r = run_cli(with(kSmallPlan, {"--json", json_path, "--csv", csv_path}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("TTFT ms") && Catch::Contains("tok/s/GPU") && Catch::Contains("free GiB") &&
                        Catch::Contains("exposed comm ms") && Catch::Contains("Pareto front") &&
                        Catch::Contains("--tp-size") && Catch::Contains("left out:"));
  const auto doc = nlohmann::json::parse(read(json_path));
  REQUIRE(doc.at("ranking").size() >= 3);
  CHECK(doc.at("ranking")[0].at("rank") == 1);
  CHECK(doc.at("ranking")[0].at("sglang_flags").get<std::string>().rfind("--tp-size", 0) == 0);
  CHECK(!doc.at("pareto").empty());
  CHECK(doc.at("inputs").at("nodes") == nlohmann::json::array({1, 2}));
  // The first line of the ranking is in the table, ready to paste.
  CHECK_THAT(r.out, Catch::Contains(doc.at("ranking")[0].at("sglang_flags").get<std::string>()));
  const auto csv = read(csv_path);
  CHECK(csv.rfind("rank,nodes,gpus,", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == static_cast<long>(doc.at("ranking").size()) + 1);
  fs::remove_all(dir);
}

TEST_CASE("plan --plot draws the front with the shipped script", "[planner][cli]") {
  const auto dir = scratch("plot");
  const auto png = dir / "front.png";
  const auto r = run_cli(with(kSmallPlan, {"--plot", png.string()}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(fs::exists(png));
  CHECK(read(png).rfind("\x89PNG", 0) == 0);
  fs::remove_all(dir);
}

TEST_CASE("plan --out is resumable and refuses foreign or clobbered files", "[planner][cli][resume]") {
  const auto dir = scratch("resume");
  const auto out = (dir / "results.json").string();
  const auto first = run_cli(with(kSmallPlan, {"--out", out}));
  REQUIRE(first.exit_code == 0);
  CHECK(nlohmann::json::parse(read(out)).at("complete") == true);

  const auto clobber = run_cli(with(kSmallPlan, {"--out", out}));
  CHECK(clobber.exit_code == 2);
  CHECK_THAT(clobber.err, Catch::Contains("already exists") && Catch::Contains("--resume"));

  const auto resumed = run_cli(with(kSmallPlan, {"--out", out, "--resume", "--json", (dir / "r.json").string()}));
  REQUIRE(resumed.exit_code == 0);
  const auto doc = nlohmann::json::parse(read(dir / "r.json"));
  CHECK(doc.at("counts").at("simulated") == 0);
  CHECK(doc.at("counts").at("resumed") == doc.at("kept"));

  auto foreign = kSmallPlan;
  foreign[8] = "8192";  // --prompt-len
  const auto refused = run_cli(with(foreign, {"--out", out, "--resume"}));
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Catch::Contains("prompt-len 4096 there, 8192 in this run"));
  fs::remove_all(dir);
}

TEST_CASE("Ctrl-C ends plan with status 130 and a valid results file that --resume completes",
          "[planner][cli][resume]") {
  const auto dir = scratch("sigint");
  const auto out = (dir / "results.json").string();
  const std::vector<std::string> args = {
      "plan",   "--model", "qwen3-30b-a3b", "--nodes", "1", "--prompt-len", "4096", "--layers", "2",
      "--jobs", "1",       "--out",         out};
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(PARATWIN_BINARY)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    ::execv(PARATWIN_BINARY, argv.data());
    ::_exit(127);
  }
  // Interrupt as soon as the first layout is in the file.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && read(out).find("\"key\"") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  const auto interrupted = nlohmann::json::parse(read(out));
  CHECK(interrupted.at("complete") == false);
  CHECK(!interrupted.at("layouts").empty());

  std::vector<std::string> resume(args.begin(), args.end());
  resume.emplace_back("--resume");
  const auto r = run_cli(resume);
  CHECK(r.exit_code == 0);
  const auto done = nlohmann::json::parse(read(out));
  CHECK(done.at("complete") == true);
  CHECK(done.at("layouts").size() > interrupted.at("layouts").size());
  fs::remove_all(dir);
}

TEST_CASE("plan rejects bad input with one clear error", "[planner][cli]") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"plan", "--prompt-len", "4096"}, "--nodes N"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--max-nodes", "2"}, "exclude each other"},
      {{"plan", "--prompt-len", "4096", "--nodes", "-1"}, "--nodes -1"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--objective", "fastest"}, "--objective 'fastest'"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--phase", "train"}, "train"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--top", "0"}, "--top 0"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--jobs", "-3"}, "--jobs -3"},
      {{"plan", "--prompt-len", "0", "--nodes", "1"}, "--prompt-len 0"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--model", "gpt-9"}, "gpt-9"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--resume"}, "--resume needs --out"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--cluster", "dgx-z"}, "dgx-z"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--sglang-version", "1"}, "--sglang-version '1'"},
      {{"plan", "--prompt-len", "4096", "--max-nodes", "100000"}, "--max-nodes 100000 means looking at more than"},
      // 55,440 nodes (443,520 GPUs, highly composite): 1.8 billion flag sets at that one node count.
      {{"plan", "--prompt-len", "4096", "--nodes", "55440"}, "--nodes 55440 means looking at more than"},
      // Output paths that could not be written are refused before the plan runs.
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--json", "/nonexistent-dir/r.json"},
       "--json /nonexistent-dir/r.json: the folder '/nonexistent-dir' does not exist"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--csv", "/nonexistent-dir/r.csv"}, "--csv /nonexistent-dir"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--plot", "/"}, "--plot /: it is a directory"},
      {{"plan", "--prompt-len", "4096", "--nodes", "1", "--out", "/nonexistent-dir/r.json"}, "--out /nonexistent-dir"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_cli(args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(message));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
