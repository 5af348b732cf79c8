#include "cli/compare_plots.hpp"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/command.hpp"
#include "topology/error.hpp"
#include "traces/collective_bandwidth.hpp"

extern char** environ;  // NOLINT: POSIX

namespace paratwin::detail {
// cmake/EmbedTextFiles.cmake: {"compare_plots", text of cli/compare_plots.py}.
const std::vector<std::pair<std::string_view, std::string_view>>& embedded_compare_plots_script();
}  // namespace paratwin::detail

namespace paratwin::cli {
namespace {

namespace fs = std::filesystem;

const char* const kPlotFiles[] = {"scatter_by_kind.png", "error_by_size.png"};

struct ProcessResult {
  bool started = false;
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};

// Runs `argv` (argv[0] searched on PATH) with stdout and stderr going to `log_path`; waits for it.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& log_path) {
  ProcessResult result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: POSIX signature
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawn_error = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error != 0) return result;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.started = true;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream log(log_path);
  std::ostringstream text;
  text << log.rdbuf();
  result.output = text.str();
  // posix_spawnp reports a missing program as exit 127 from the child on glibc.
  if (result.exit_code == 127 && result.output.empty()) result.started = false;
  return result;
}

std::string tail_of(const std::string& text, std::size_t max_chars) {
  return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

nlohmann::json timeline_json(const Trace& trace, int rank) {
  nlohmann::json out = nlohmann::json::array();
  for (const Event& e : trace.events) {
    if (e.rank != rank) continue;
    out.push_back(
        {{"name", e.name}, {"kind", e.kind}, {"stream", e.stream}, {"start_s", e.start_s}, {"end_s", e.end_s}});
  }
  return out;
}

}  // namespace

std::string find_matplotlib_python() {
  std::vector<std::string> candidates;
  if (const char* chosen = std::getenv("PARATWIN_PYTHON"); chosen != nullptr && *chosen != '\0') {
    candidates.emplace_back(chosen);
  } else {
    candidates = {"python3", "/usr/bin/python3"};
  }
  const fs::path log = fs::temp_directory_path() / fmt::format("paratwin-python-probe-{}.log", ::getpid());
  std::vector<std::string> tried;
  for (const std::string& python : candidates) {
    const ProcessResult probe = run_process({python, "-c", "import matplotlib"}, log.string());
    if (probe.started && probe.exit_code == 0) {
      std::error_code ec;
      fs::remove(log, ec);
      return python;
    }
    tried.push_back(fmt::format("{} ({})", python, probe.started ? "cannot import matplotlib" : "not found"));
  }
  std::error_code ec;
  fs::remove(log, ec);
  fail(
      "--plots needs python3 with matplotlib (Debian: apt-get install python3-matplotlib, which "
      "scripts/install-deps.sh installs; or set PARATWIN_PYTHON); tried: {}",
      fmt::join(tried, ", "));
}

void prepare_plot_dir(const std::string& dir) {
  if (dir.empty()) fail("--plots: name a folder to write the pictures to");
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail("--plots {}: exists and is not a folder", dir);
  fs::create_directories(dir, ec);
  if (ec) fail("--plots {}: cannot create the folder ({})", dir, ec.message());
  const fs::path probe = fs::path(dir) / fmt::format(".paratwin-write-probe-{}", ::getpid());
  {
    std::ofstream file(probe);
    if (!file) fail("--plots {}: the folder is not writable", dir);
  }
  fs::remove(probe, ec);
}

void write_comparison_plots(const std::string& python, const Trace& predicted, const Trace& measured,
                            const Comparison& comparison, int rank, const std::string& dir) {
  nlohmann::json ops = nlohmann::json::array();
  for (const OpComparison& op : comparison.ops) {
    ops.push_back({{"kind", op.kind},
                   {"communication", is_communication_kind(op.kind)},
                   {"size_bytes", op.size_bytes},
                   {"predicted_s", op.predicted_s},
                   {"measured_s", op.measured_s},
                   {"relative_error",
                    std::isfinite(op.relative_error) ? nlohmann::json(op.relative_error) : nlohmann::json(nullptr)}});
  }
  const nlohmann::json data = {
      {"rank", rank},
      {"timelines", {{"predicted", timeline_json(predicted, rank)}, {"measured", timeline_json(measured, rank)}}},
      {"ops", std::move(ops)}};

  std::string work_template = (fs::path(dir) / ".paratwin-plots-XXXXXX").string();
  if (::mkdtemp(work_template.data()) == nullptr) fail("--plots {}: cannot create a temporary folder in it", dir);
  const fs::path work(work_template);
  const auto cleanup = [&] {
    std::error_code ec;
    fs::remove_all(work, ec);
  };
  try {
    const auto& scripts = detail::embedded_compare_plots_script();
    PARATWIN_ASSERT(scripts.size() == 1, "expected one embedded plot script, got {}", scripts.size());
    write_file_atomically((work / "compare_plots.py").string(), std::string(scripts.front().second));
    write_file_atomically((work / "data.json").string(), data.dump());
    const fs::path pictures = work / "pictures";
    std::error_code ec;
    if (!fs::create_directory(pictures, ec)) fail("--plots {}: cannot create a temporary folder in it", dir);
    const ProcessResult run =
        run_process({python, (work / "compare_plots.py").string(), (work / "data.json").string(), pictures.string()},
                    (work / "python.log").string());
    if (!run.started) fail("--plots: cannot run {}", python);
    if (run.exit_code != 0) {
      fail("--plots: {} failed drawing the pictures (exit {}): {}", python, run.exit_code, tail_of(run.output, 2000));
    }
    std::vector<std::string> files = {fmt::format("timeline_rank{}.png", rank)};
    for (const char* name : kPlotFiles) files.emplace_back(name);
    for (const std::string& name : files) {
      if (!fs::exists(pictures / name)) fail("--plots: {} did not draw {}", python, name);
    }
    for (const std::string& name : files) {
      fs::rename(pictures / name, fs::path(dir) / name, ec);
      if (ec) fail("--plots {}: cannot move {} into place ({})", dir, name, ec.message());
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

}  // namespace paratwin::cli
