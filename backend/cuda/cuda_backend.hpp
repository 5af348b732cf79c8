#pragma once
/// The CUDA/NCCL backend: executes a schedule on the GPUs (one host thread per GPU, one NCCL rank each), with real
/// kernels on the ops' real shapes, and returns a CUDA-event trace. No CUDA type appears here. One process drives
/// every GPU of a node; across nodes (or one process per GPU) `mpirun` starts the processes and CudaOptions::processes
/// connects them: process p drives the ranks cuda_plan::process_ranks gives it, the same code path as one process.
///
/// Per rank: a compute and a comm stream; the schedule's dependencies become cudaEvent waits (see
/// backend/cuda_plan/event_plan.hpp); communicators mirror SGLang's group coordinators (comm_plan.hpp). A step is
/// enqueued without any host synchronisation; the host then polls its completion under a watchdog that aborts every
/// communicator on a timeout or an NCCL asynchronous error.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/moe_gemm_choice.hpp"
#include "backend/process_group.hpp"
#include "models/model_spec.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {

/// A wrong group layout injected on purpose (tests of the numerical check).
struct GroupFault {
  GroupFamily family = GroupFamily::kAttnCp;
  int group_index = 0;
  int pos_a = 0, pos_b = 1;  ///< positions in the group whose communicator ranks are swapped
};

/// A family's communicators built from other rank lists (tests of the numerical check), e.g. MoE groups that run
/// into the next pipeline stage.
struct GroupOverride {
  GroupFamily family = GroupFamily::kMoeEp;
  std::vector<std::vector<int>> groups;  ///< rank lists, in position order; they must partition the world
};

struct CudaOptions {
  int warmup_steps = 2;       ///< steps run before measuring (excluded)
  int measured_steps = 5;     ///< steps measured; the median step is reported
  double timeout_s = 300;     ///< watchdog: a step (or communicator set-up) longer than this aborts the run
  bool per_op_events = true;  ///< false: the lightly instrumented mode (events at step boundaries only)
  /// true: each event's duration is the op's median over the measured steps (its start stays the median step's);
  /// for microbenchmarks, whose ops do not overlap. false: the median step's events as they happened.
  bool per_op_median = false;
  std::uint64_t seed = 1;  ///< weights and token ids
  /// The MoE expert GEMMs' launch (`paratwin run --moe-gemm`); check_cuda's single-GPU reference always runs cuBLAS
  /// streams, so that a check of the Hopper kernel compares it with cuBLAS.
  MoeGemmChoice moe_gemm = MoeGemmChoice::kAuto;
  /// The model the schedule was built from (dimensions of the weights); default: the zoo model named by the
  /// schedule's meta.
  std::optional<ModelSpec> model;
  std::optional<GroupFault> group_fault;
  std::optional<GroupOverride> group_override;
  /// GPUs to use, by local index, per rank; empty: the placement's GPU of each rank (run) or rank r on GPU r
  /// (check; under several processes r modulo the GPUs visible).
  std::vector<int> gpus;
  /// The processes the run spans (mpirun); null or one process: this process runs every rank. Not owned.
  ProcessGroup* processes = nullptr;
};

/// Timing of one run (all steps measured, per rank).
struct CudaRunStats {
  std::vector<double> step_s;  ///< per measured step: the slowest rank's step time
  double median_step_s = 0;
  int median_step = 0;                     ///< index of the median step (its events are the trace's)
  std::int64_t device_bytes_per_rank = 0;  ///< largest device memory the engine allocated on one rank
  std::vector<std::string> generic_ops;    ///< rank 0's ops run on scratch buffers (no real data flow)
  /// Rank 0's attention calls of one step by kernel: cuDNN's fused flash attention, the unfused cuBLAS path, the
  /// index-sparse MLA kernel on the tensor cores, the reference kernel (other index-sparse attention).
  std::int64_t attention_calls_cudnn = 0, attention_calls_cublas = 0, attention_calls_sparse_mla = 0,
               attention_calls_reference = 0;
  /// Rank 0's MoE expert GEMMs (bf16 grouped GEMMs) of one step by launch, and why the ones that wanted the Hopper
  /// kernel run cuBLAS streams: one line per distinct reason, with its op count.
  std::int64_t moe_gemm_ops_cublas_streams = 0, moe_gemm_ops_hopper_kernel = 0;
  /// Rank 0's fp8 expert GEMMs of one step: block-scaled cuBLASLt on side streams, the persistent fp8 kernel.
  std::int64_t moe_gemm_ops_fp8 = 0, moe_gemm_ops_fp8_kernel = 0;
  std::vector<std::string> moe_gemm_fallbacks;
  /// Rank 0's DSA indexer-score ops of one step: on the fp8 Hopper kernel, on the bf16 kernels, and why the fp8 ops
  /// among the latter cannot run the fp8 kernel: one line per distinct reason, with its op count.
  std::int64_t indexer_ops_fp8 = 0, indexer_ops_bf16 = 0;
  std::vector<std::string> indexer_fallbacks;
};

struct CudaRunResult {
  Trace trace;  ///< per-op events of the median step (empty events in the light mode)
  CudaRunStats stats;
};

/// Runs `schedule`; throws paratwin::Error for anything the user can fix (too few GPUs, memory shortfall, version
/// mismatch, watchdog timeout, NCCL errors), naming rank, op and group where there is one.
[[nodiscard]] CudaRunResult run_cuda(const Schedule& schedule, const Placement& placement, const CudaOptions& options);

/// The numerical check: outputs of `schedule` against a single-GPU reference run of `reference` (the same model and
/// prompt with a layout of one rank), both computed by the same code.
struct CudaCheckResult {
  double hidden_rel_l2 = 0;  ///< final residual stream of every token
  double logits_rel_l2 = 0;  ///< last token's logits
  double tolerance = 1e-2;
  bool passed = false;
  std::string detail;
};
[[nodiscard]] CudaCheckResult check_cuda(const Schedule& schedule, const Schedule& reference,
                                         const CudaOptions& options);

/// Local GPUs visible, and the CUDA/NCCL/cuDNN versions ("cuda runtime 13.0, driver 13.0, nccl 2.28.3, cudnn 9.14.0").
[[nodiscard]] int cuda_device_count();
[[nodiscard]] std::string cuda_versions();
/// "64 cuDNN fused, 0 cuBLAS unfused, 0 sparse MLA, 0 reference kernel": the attention calls of `stats` by kernel path.
[[nodiscard]] std::string attention_paths_summary(const CudaRunStats& stats);

/// "4 on cuBLAS streams, 0 on the Hopper kernel": the MoE expert GEMMs of `stats` by launch.
[[nodiscard]] std::string moe_gemm_summary(const CudaRunStats& stats);

/// "2 on the fp8 Hopper kernel, 0 on the bf16 kernels": the DSA indexer-score ops of `stats` by kernel family.
[[nodiscard]] std::string indexer_summary(const CudaRunStats& stats);

/// A Backend running `run_cuda` with `options`.
[[nodiscard]] std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options);

}  // namespace paratwin
