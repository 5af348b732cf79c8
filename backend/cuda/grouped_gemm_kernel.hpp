#pragma once
/// The backend's own grouped GEMM for Hopper (sm_90a), for MoE experts with few rows each: one persistent launch whose
/// blocks walk the tiles of every expert (cuda_plan/grouped_gemm_tiles.hpp), so that the experts' weight traffic
/// overlaps their math instead of each expert's GEMM filling a part of the GPU in turn. Per block: one producer
/// warpgroup streams X and W tiles into a 4-stage shared-memory ring with 16-byte asynchronous copies (W through a
/// per-expert pointer, as the engine's experts are separate allocations) that complete on mbarriers; two consumer
/// warpgroups each multiply 64 rows × 256 columns with wgmma (fp32 accumulators in registers) and store bf16 rows,
/// masked past the expert's row count. grouped_gemm.hpp decides when to use it; measured on H200 its main loop runs
/// 350–450 TFLOP/s, 0.5–0.6 × cuBLAS's dense GEMM (docs/performance.md "MoE expert GEMMs").

#include <cuda_runtime.h>

namespace paratwin::cuda {

struct GroupedKernelArgs {
  /// 3 · groups device pointers, GroupedGemm::operand_addresses' order: W_g (k × n), X_g (rows_g × k), Y_g (rows_g ×
  /// n), row-major bf16. W_g and X_g 16-byte aligned, Y_g 4-byte aligned.
  void* const* table = nullptr;
  const int* schedule = nullptr;  ///< device copy of GroupedTileSchedule::table
  int groups = 0, tiles = 0;
  int n = 0, k = 0;  ///< grouped_kernel_supports(n, k)
};

/// Enqueues the kernel on `stream` (current device, compute capability 9.0). CUDA errors throw paratwin::Error.
void launch_grouped_gemm_kernel(const GroupedKernelArgs& args, cudaStream_t stream);

}  // namespace paratwin::cuda
