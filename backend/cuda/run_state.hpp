#pragma once
/// The state shared by the rank threads of one engine run (rank_worker.hpp) and the watchdog in the calling thread
/// (cuda_engine.cpp): the host barriers, the abort and timeout flags, every communicator, each rank's results or
/// error, and the step gate. Internal to backend/cuda.

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda_plan/rank_results.hpp"

namespace paratwin::cuda {

/// The clock of the run: RunState::phase_start_ns (set by the workers, read by the watchdog) and the elapsed times.
using Clock = std::chrono::steady_clock;

/// State shared by the workers (this process's ranks) and the watchdog of one run. Per-rank vectors are indexed by
/// the global rank; only this process's entries are used until the results are exchanged.
struct RunState {
  RunState(int ranks, std::vector<int> local, bool several_processes)
      : world(ranks),
        local_ranks(std::move(local)),
        cross_process(several_processes),
        stuck(static_cast<std::size_t>(ranks)),
        errors(static_cast<std::size_t>(ranks)),
        results(static_cast<std::size_t>(ranks)) {
    for (int i = 0; i < ranks; ++i) {
      enqueuing.emplace_back(std::make_unique<std::atomic<int>>(-1));
      done.emplace_back(std::make_unique<std::atomic<bool>>(false));
      reported.emplace_back(std::make_unique<std::atomic<bool>>(false));
    }
  }
  int world;
  std::vector<int> local_ranks;  // the ranks this process drives, ascending
  bool cross_process;            // other processes run the other ranks: barriers span them too
  ncclUniqueId uid{};
  std::atomic<bool> abort{false};      // every worker stops; comms are (being) aborted
  std::atomic<bool> timed_out{false};  // the watchdog fired: workers report where they are stuck
  std::atomic<std::int64_t> phase_start_ns{0};
  std::vector<std::unique_ptr<std::atomic<int>>> enqueuing;  // op being enqueued per rank (−1: none)
  std::vector<std::unique_ptr<std::atomic<bool>>> done, reported;
  std::mutex mu;
  std::condition_variable cv;
  int barrier_count = 0, barrier_generation = 0;
  bool process_barrier_wanted = false;          // guarded by mu: the local ranks arrived, the watchdog thread goes on
  std::vector<ncclComm_t> comms;                // every communicator created (for abort), guarded by mu
  std::vector<std::string> stuck;               // per rank, filled on timeout
  std::vector<std::string> errors;              // per rank
  std::vector<cuda_plan::RankResults> results;  // per rank
  // The step gate (see Worker::gate_device_): one host-mapped flag per process that its GPUs poll, raised once per
  // step by its first rank's thread after every rank of every process enqueued.
  int* gate = nullptr;

  void touch() {
    phase_start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  }
  // Returns false when the run was aborted while waiting. With other processes, the last local rank to arrive
  // hands the barrier to the watchdog thread, which completes it across processes (release_barrier).
  bool barrier() {
    std::unique_lock lock(mu);
    const int gen = barrier_generation;
    if (++barrier_count == static_cast<int>(local_ranks.size())) {
      barrier_count = 0;
      if (cross_process) {
        process_barrier_wanted = true;
      } else {
        ++barrier_generation;
        cv.notify_all();
        return !abort;
      }
    }
    // Timed waits: an abort raised without the lock cannot be missed.
    while (barrier_generation == gen && !abort) cv.wait_for(lock, std::chrono::milliseconds(10));
    return !abort;
  }
  // Called by the watchdog thread once every process reached the barrier.
  void release_barrier() {
    std::lock_guard lock(mu);
    ++barrier_generation;
    cv.notify_all();
  }
  [[nodiscard]] bool take_process_barrier() {
    std::lock_guard lock(mu);
    return std::exchange(process_barrier_wanted, false);
  }
  void add_comm(ncclComm_t c) {
    std::lock_guard lock(mu);
    comms.push_back(c);
  }
};

}  // namespace paratwin::cuda
