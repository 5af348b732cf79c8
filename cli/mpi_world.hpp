#pragma once
/// The MPI world a paratwin process runs in, when `mpirun` started it (docs/plan.md, "MPI"). Small and CUDA-free so
/// every command can share it (`mpirun paratwin plan` splits layouts over ranks; `mpirun paratwin run` can broadcast
/// the NCCL unique id with it). No MPI type appears here: without MPI in the build (PARATWIN_HAVE_MPI unset), or
/// when the process was not started by an MPI launcher, the world is this process alone (rank 0 of 1) and every
/// collective is the identity.

#include <memory>
#include <string>
#include <vector>

#include "backend/process_group.hpp"

namespace paratwin::cli {

class MpiWorld final : public ProcessGroup {
 public:
  /// The process's world. The first call initializes MPI when the build has it and an MPI launcher started the
  /// process (Open MPI's OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment); MPI is finalized when the
  /// process exits normally. Call it from the main thread.
  static MpiWorld& get();

  /// True when MPI was initialized (several processes may share the work).
  [[nodiscard]] bool active() const { return active_; }
  [[nodiscard]] int rank() const { return rank_; }
  [[nodiscard]] int size() const { return size_; }
  /// Whether this build can use MPI at all.
  [[nodiscard]] static bool built_with_mpi();

  /// Rank `root`'s `bytes`, returned on every rank (`bytes` is ignored elsewhere). Collective.
  [[nodiscard]] std::string broadcast(const std::string& bytes, int root = 0) const;
  /// Every rank's `mine`, in rank order, on `root`; an empty vector on the other ranks. Collective.
  [[nodiscard]] std::vector<std::string> gather(const std::string& mine, int root = 0) const;
  /// Every rank's `mine`, in rank order, on every rank (gather, then broadcast). Collective.
  [[nodiscard]] std::vector<std::string> all_gather(const std::string& mine) const;
  /// Waits for every rank. Collective.
  void barrier() const;
  /// Ends every process of the job with `exit_code` when several share it (MPI_Abort), so that one process's error
  /// never leaves the others waiting in a collective; returns when this process runs alone.
  void abort_job(int exit_code) const;

  // ProcessGroup, for `mpirun paratwin run` (the CUDA backend's processes).
  [[nodiscard]] int process_index() const override { return rank_; }
  [[nodiscard]] int process_count() const override { return size_; }
  [[nodiscard]] std::vector<std::string> exchange(const std::string& mine) const override { return all_gather(mine); }
  void start_barrier() override;
  [[nodiscard]] bool barrier_done() override;

  ~MpiWorld() override;

 private:
  MpiWorld();
  struct PendingBarrier;  // MPI_Request of MPI_Ibarrier
  bool active_ = false;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<PendingBarrier> pending_;
};

}  // namespace paratwin::cli
