#pragma once
/// A pool of forked worker processes, driven from one thread (docs/plan.md, "Pool").
///
/// Why processes: simulate() runs SimGrid, whose engine is a process-wide singleton, and forks; it must not run beside
/// other threads (sim/sim_backend.hpp). So the pool never starts a thread: the calling thread forks one child per
/// task, keeps at most `jobs` children in flight, and waits on their pipes with poll(). Each child runs its task
/// (which may simulate in-process, once: the child is fresh), writes the answer to its pipe and exits with _exit, so
/// nothing of the parent's state (stdio buffers, atexit handlers) runs twice. The parent's memory is shared
/// copy-on-write; fork, pipe and exit cost a few milliseconds per task (tests/planner/test_process_pool.cpp runs ten
/// trivial tasks in ~25 ms), against ~1 s per DeepSeek-V3.2 layout on 64 GPUs (docs/performance.md).

#include <cstddef>
#include <functional>
#include <string>

namespace paratwin::plan {

/// What one child answered.
struct TaskAnswer {
  bool ok = false;   ///< the task returned; else `text` says what went wrong (exception, signal, exit status)
  std::string text;  ///< the task's result, or the error
};

class ProcessPool {
 public:
  /// `jobs` ≥ 1: children in flight at most.
  explicit ProcessPool(int jobs);

  /// Runs task(i) for i in [0, count) in children. `on_done(i, answer)` is called in this process as each finishes,
  /// in completion order. `should_stop()` is polled at least every 100 ms: once it returns true no task is started,
  /// the children in flight are killed (SIGKILL, by pid) and reaped, and run returns false. Returns true when every
  /// task finished. Children restore SIGINT and SIGTERM to their defaults, so Ctrl-C on a terminal ends them too.
  bool run(std::size_t count, const std::function<std::string(std::size_t)>& task,
           const std::function<void(std::size_t, TaskAnswer)>& on_done, const std::function<bool()>& should_stop);

  [[nodiscard]] int jobs() const { return jobs_; }

 private:
  int jobs_;
};

/// The number of CPU cores online (at least 1).
[[nodiscard]] int online_cores();

}  // namespace paratwin::plan
