#pragma once
/// The processes one backend run spans when a launcher (`mpirun -np N paratwin run ...`) started one paratwin
/// process per node or per GPU. A backend uses it only to share set-up bytes (the NCCL unique id), to line up the
/// processes' steps, and to gather the ranks' results; every GPU operation stays in NCCL. Implemented over MPI in
/// cli/ (cli/mpi_world.hpp); no MPI type appears here. Called only from the thread that called the backend.

#include <string>
#include <vector>

namespace paratwin {

class ProcessGroup {
 public:
  ProcessGroup() = default;
  virtual ~ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;
  ProcessGroup(ProcessGroup&&) = delete;
  ProcessGroup& operator=(ProcessGroup&&) = delete;

  [[nodiscard]] virtual int process_index() const = 0;
  [[nodiscard]] virtual int process_count() const = 0;
  /// Every process's `mine`, in process order, on every process. Collective and blocking.
  [[nodiscard]] virtual std::vector<std::string> exchange(const std::string& mine) const = 0;
  /// A barrier in two halves, so that the caller's watchdog keeps running while it waits: every process calls
  /// start_barrier() once, then barrier_done() until it returns true. One barrier in flight at a time.
  virtual void start_barrier() = 0;
  [[nodiscard]] virtual bool barrier_done() = 0;
};

}  // namespace paratwin
