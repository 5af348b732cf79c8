// simulate(): validation, calibration, optional fast mode, and process isolation. SimGrid 3.32's engine is a
// process-wide singleton whose clock (EngineImpl::now_) survives the engine's destruction and whose models cannot
// be re-selected, so a second simulation in one process would start at the first one's end time. Each simulation
// therefore runs in a forked child that starts from the parent's SimGrid-free state and sends its result back
// through a pipe.

#include "sim/sim_backend.hpp"

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <variant>

#include "models/schedule_json.hpp"
#include "sim/calibration.hpp"
#include "sim/compute_model.hpp"
#include "sim/fast_mode.hpp"
#include "sim/nccl_model.hpp"
#include "sim/result_codec.hpp"
#include "sim/sim_engine.hpp"
#include "sim/summary.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

SimResult simulate_here(const Schedule& schedule, const Placement& placement, const Calibration& calibration,
                        const SimOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  SimResult result;
  sim::EngineResult engine;
  int layers_reused = 0;
  if (options.fast) {
    const sim::ReducedSchedule reduced = sim::reduce_layers(schedule);
    if (!reduced.runs.empty()) {
      engine = sim::run_engine(reduced.schedule, placement, calibration, options, reduced.layer_weight);
      engine.events = sim::expand_layers(schedule, reduced, engine.events);
      layers_reused = reduced.layers_reused;
    } else {
      engine = sim::run_engine(schedule, placement, calibration, options);
    }
  } else {
    engine = sim::run_engine(schedule, placement, calibration, options);
  }
  result.summary = sim::summarize(schedule, placement, engine.events, engine);
  result.summary.layers_reused = layers_reused;
  result.trace.events = std::move(engine.events);
  TraceMeta& meta = result.trace.meta;
  meta.backend = "sim";
  meta.model = schedule.meta.model;
  meta.layout = schedule.meta.config.to_flags();
  const Cluster& cluster = placement.cluster();
  meta.cluster = fmt::format("{} {}x{}", cluster.name, cluster.nodes, cluster.gpus_per_node);
  meta.calibration = calibration.source;
  meta.versions["simgrid"] = "3.32";
  meta.versions["nccl_model"] = "2.28.9";
  meta.extra["nccl_model"] = options.nccl_model ? "on" : "off";
  meta.extra["nvls"] = options.enable_nvls ? "on" : "off";
  meta.extra["fast"] = options.fast ? "on" : "off";
  if (!options.algorithms.empty()) meta.extra["algorithms"] = options.algorithms;
  if (!options.protocols.empty()) meta.extra["protocols"] = options.protocols;
  result.summary.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

enum class Status : char { kOk = 0, kError = 1, kInternal = 2, kOther = 3 };

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(3);
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

SimResult simulate_in_child(const Schedule& schedule, const Placement& placement, const Calibration& calibration,
                            const SimOptions& options) {
  std::array<int, 2> fds{};
  if (::pipe(fds.data()) != 0) fail("simulate: cannot create a pipe ({})", std::strerror(errno));
  // Flush stdio first: the child inherits unwritten buffers, and SimGrid may flush them a second time.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("simulate: cannot fork the simulation process ({})", std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string payload;
    Status status = Status::kOk;
    try {
      payload = sim::encode_result(simulate_here(schedule, placement, calibration, options));
    } catch (const Error& error) {
      status = Status::kError;
      payload = error.what();
    } catch (const InternalError& error) {
      status = Status::kInternal;
      payload = error.what();
    } catch (const std::exception& error) {
      status = Status::kOther;
      payload = error.what();
    }
    const char tag = static_cast<char>(status);
    write_all(fds[1], &tag, 1);
    write_all(fds[1], payload.data(), payload.size());
    ::close(fds[1]);
    ::_exit(0);  // skip the parent's atexit handlers and static destructors
  }
  ::close(fds[1]);
  // The schedule's hash (its canonical JSON) costs about as much as a simulation: compute it on the other core
  // while the child simulates.
  std::string hash = options.schedule_hash;
  try {
    if (hash.empty()) hash = schedule_hash(schedule);
  } catch (...) {
    ::close(fds[0]);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  std::string data;
  std::array<char, 1 << 16> buffer{};
  while (true) {
    const ssize_t n = ::read(fds[0], buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(wstatus)) {
    throw InternalError(fmt::format("simulate: the simulation process died with signal {}", WTERMSIG(wstatus)));
  }
  if (data.empty() || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    throw InternalError(fmt::format("simulate: the simulation process failed (exit status {})",
                                    WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1));
  }
  const auto status = static_cast<Status>(data[0]);
  std::string payload = data.substr(1);
  switch (status) {
    case Status::kOk: {
      SimResult result = sim::decode_result(payload);
      result.trace.meta.schedule_hash = std::move(hash);
      return result;
    }
    case Status::kError:
      throw Error(payload);
    case Status::kInternal:
      throw InternalError(payload);
    case Status::kOther:
      break;
  }
  throw InternalError("simulate: " + payload);
}

class SimBackend final : public Backend {
 public:
  explicit SimBackend(SimOptions options) : options_(std::move(options)) {}
  [[nodiscard]] std::string_view name() const override { return "sim"; }
  [[nodiscard]] Trace run(const Schedule& schedule, const Placement& placement) override {
    return simulate(schedule, placement, options_).trace;
  }

 private:
  SimOptions options_;
};

}  // namespace

SimResult simulate(const Schedule& schedule, const Placement& placement, const SimOptions& options) {
  // Everything that can be checked without SimGrid is checked here, so errors surface in the caller's process.
  const Calibration calibration =
      options.calibration_file.empty() ? default_calibration() : load_calibration_file(options.calibration_file);
  (void)sim::parse_algo_proto_mask(options.algorithms, options.protocols);
  // Cheap checks here; the collective matching is checked by the engine (its errors come back from the child).
  sim::validate_schedule(schedule, placement, /*deep=*/false);
  if (options.isolate_process) return simulate_in_child(schedule, placement, calibration, options);
  static bool simulated_here = false;
  if (simulated_here) {
    fail("simulate: SimGrid can run only one simulation per process; set SimOptions::isolate_process = true");
  }
  simulated_here = true;
  SimResult result = simulate_here(schedule, placement, calibration, options);
  result.trace.meta.schedule_hash = options.schedule_hash.empty() ? schedule_hash(schedule) : options.schedule_hash;
  return result;
}

std::vector<std::vector<double>> compute_stream_s(const Schedule& schedule, const GpuSpec& gpu,
                                                  const SimOptions& options) {
  const Calibration calibration =
      options.calibration_file.empty() ? default_calibration() : load_calibration_file(options.calibration_file);
  const sim::ComputeModel model(gpu, calibration.compute);
  const auto micro_batches = static_cast<std::size_t>(std::max(1, schedule.meta.micro_batches));
  std::vector<std::vector<double>> seconds(schedule.ranks.size(), std::vector<double>(micro_batches, 0.0));
  for (std::size_t r = 0; r < schedule.ranks.size(); ++r) {
    for (const Op& op : schedule.ranks[r]) {
      const auto* compute = std::get_if<ComputeOp>(&op.body);
      if (compute == nullptr) continue;
      const auto mb = static_cast<std::size_t>(std::clamp(op.micro_batch, 0, static_cast<int>(micro_batches) - 1));
      seconds[r][mb] += model.op_time_s(*compute);
    }
  }
  return seconds;
}

std::unique_ptr<Backend> make_sim_backend(const SimOptions& options) {
  return std::make_unique<SimBackend>(options);
}

}  // namespace paratwin
