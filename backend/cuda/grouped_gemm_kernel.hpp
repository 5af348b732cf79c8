#pragma once
/// The backend's own grouped GEMM for Hopper (sm_90a), for MoE experts with few rows each: one persistent launch whose
/// clusters of two blocks walk the tile pairs of every expert (cuda_plan/grouped_gemm_tiles.hpp), so that the experts'
/// weight traffic overlaps their math instead of each expert's GEMM filling a part of the GPU in turn. Per block: one
/// producer thread streams X and W tiles with the copy engine (TMA, 128-byte swizzle, through one tensor map per
/// expert's W and X, since the engine's experts are separate allocations) into a 3-stage shared-memory ring, completing
/// on mbarriers, the operand that the pair shares multicast to both blocks (each block loads half of it); two consumer
/// warpgroups each multiply 64 rows × 256 columns with wgmma (fp32 accumulators in registers; 64 × 128 each for a
/// remainder of at most 64 rows), write them as bf16 to a staging area in shared memory, from which the copy engine
/// stores the rows within the expert (one bulk copy per row) while the warpgroup goes on to its next tile. The two
/// warpgroups share each tile (cooperative), not take turns on separate ones: a warpgroup's own 128 × 128 tile needs
/// 1.5 × the L2 reads per flop, and the L2 is the kernel's busiest unit; that ping-pong lost 9–31 %. Clusters of two,
/// not four: 2 × 2 clusters of one expert's tiles (X multicast along their rows, W along their columns: 0.75 × the L2
/// reads per flop) fit only 30 at a time on H200 (120 of its 132 SMs; a cluster stays within one GPC) against 66
/// pairs, and gained less per SM (0–9 %) than the idle SMs cost: 2–17 % slower (docs/performance.md "MoE expert
/// GEMMs" has the figures on H200; the branch issue6-grouped-cluster4 has that kernel). grouped_gemm.hpp decides when
/// to use it.

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

struct GroupedKernelArgs {
  /// 3 · groups device pointers, GroupedGemm::operand_addresses' order: W_g (k × n), X_g (rows_g × k), Y_g (rows_g ×
  /// n), row-major bf16; the kernel reads the Y_g (16-byte aligned) from it, W and X through `maps`.
  void* const* table = nullptr;
  /// Device copy of encode_grouped_tensor_maps' 2 · groups maps (64-byte aligned).
  const CUtensorMap* maps = nullptr;
  const int* schedule = nullptr;  ///< device copy of GroupedTileSchedule::table
  int groups = 0, pairs = 0;      ///< GroupedTileSchedule's
  int n = 0, k = 0;               ///< grouped_kernel_supports(n, k)
};

/// Encodes the tensor maps the kernel loads through, from the host copy of the pointer table (`table`, 3 · groups
/// pointers as in GroupedKernelArgs) and the groups' rows: W_g at maps[g] (boxes of 64 k-rows × 64 columns), X_g at
/// maps[groups + g] (boxes of 64 rows × 64 k). X_g's map covers its rows_g rows only, so that the rows of a partial
/// tile read as zeros. False where an operand (Y_g too: the kernel stores its rows by bulk copies) is not 16-byte
/// aligned, tensor maps are unavailable, or the driver refuses one (the caller falls back to another method).
[[nodiscard]] bool encode_grouped_tensor_maps(void* const* table, const int* rows, int groups, int n, int k,
                                              CUtensorMap* maps);

/// Enqueues the kernel on `stream` (current device, compute capability 9.0). CUDA errors throw paratwin::Error.
void launch_grouped_gemm_kernel(const GroupedKernelArgs& args, cudaStream_t stream);

}  // namespace paratwin::cuda
