#pragma once
/// One local rank of an engine run, driven by its own host thread (cuda_engine.cpp starts them): binds the rank's ops,
/// checks and allocates its GPU memory, creates its streams and communicators (from the comm plan), loads its
/// attention kernels, then per step enqueues every op behind the step gate (events from the event plan) and polls the
/// step's end; it reports its timings, outputs and any error through the RunState. Internal to backend/cuda.

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda/op_binder.hpp"
#include "backend/cuda/run_state.hpp"
#include "backend/cuda_plan/comm_plan.hpp"
#include "backend/cuda_plan/event_plan.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::cuda {

/// Where `op` runs, as the reports of a stuck rank name it: its collective and group, its peer, or the compute stream.
[[nodiscard]] std::string op_group(const Op& op);

/// The rank `rank` on GPU `gpu`; its thread calls run(), which records any error in the RunState and aborts the run.
class Worker {
 public:
  Worker(RunState& st, const Schedule& s, const ModelSpec& model, const CudaOptions& o, int rank, int gpu,
         const cuda_plan::CommPlan& plan, bool collect)
      : st_(st), s_(s), model_(model), o_(o), rank_(rank), gpu_(gpu), plan_(plan), collect_(collect) {}

  void run() {
    try {
      body();
    } catch (const std::exception& e) {
      st_.errors[static_cast<std::size_t>(rank_)] = e.what();
      st_.abort = true;
      st_.cv.notify_all();
    }
    *st_.done[static_cast<std::size_t>(rank_)] = true;
  }

 private:
  void body();
  void make_comms();
  void load_attention_kernels();
  ncclComm_t comm_of(GroupFamily family) const;
  void enqueue_step();
  bool wait_step();
  void issue(const BoundOp& b);
  void collect_outputs();

  RunState& st_;
  const Schedule& s_;
  const ModelSpec& model_;
  const CudaOptions& o_;
  int rank_, gpu_;
  const cuda_plan::CommPlan& plan_;
  bool collect_;
  RankProgram prog_;
  cuda_plan::EventPlan events_;
  cudaStream_t compute_ = nullptr, comm_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t blas_lt_ = nullptr;
  void* lt_workspace_ = nullptr;
  void* attention_workspace_ = nullptr;
  std::unique_ptr<cuda::CudnnAttention> cudnn_attention_;
  cuda::AttentionPathCounts attention_paths_{};      // this step's attention calls per path
  std::unique_ptr<cuda::GemmStreams> gemm_streams_;  // the expert GEMMs' side streams
  ncclComm_t world_ = nullptr;
  std::array<ncclComm_t, kFamilyCount> family_comms_{};
  std::vector<cudaEvent_t> start_, end_;  // per op (per-op mode: timing; light mode: end_ = done events)
  cudaEvent_t begin_ = nullptr, finish_ = nullptr, comm_finish_ = nullptr;
  // The step gate: every rank enqueues its whole step behind a kernel that polls RunState::gate, raised once all
  // ranks finished enqueuing, so no GPU starts while another rank's host is still enqueuing (which would show up as
  // waits inside the first collectives of the step).
  int* gate_device_ = nullptr;
  cudaEvent_t gate_open_ = nullptr;
  int* step_sync_ = nullptr;  // device int of the step-start all-reduce
  int step_ = 0;
  static constexpr std::int64_t kGateTimeoutNs = 200'000'000;  // 0.2 s: far above any enqueue time
};

}  // namespace paratwin::cuda
