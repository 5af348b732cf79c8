#pragma once
/// The engine behind run_cuda and check_cuda (cuda_engine.cpp): runs one schedule on this process's ranks and
/// returns the timings of every rank and, when asked, the outputs the numerical check compares. Internal to
/// backend/cuda.

#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda_plan/rank_results.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"

namespace paratwin::cuda {

/// Where each rank runs: its GPU (local index) and node (for the trace).
struct RankDevices {
  std::vector<int> gpu, node;
};

struct EngineResult {
  CudaRunResult run;
  std::vector<cuda_plan::RankOutputs> outputs;  ///< per rank; filled when `collect_outputs`
};

/// Runs `s` with `o` on this process's ranks (all of them, or its block under several processes); throws
/// paratwin::Error naming rank, op and group for anything that goes wrong.
[[nodiscard]] EngineResult run_engine(const Schedule& s, const ModelSpec& model, const RankDevices& devices,
                                      const CudaOptions& o, bool collect_outputs);

/// The model whose weights the run uses: CudaOptions::model, else the zoo model the schedule names.
[[nodiscard]] ModelSpec model_for(const Schedule& s, const CudaOptions& o);

}  // namespace paratwin::cuda
