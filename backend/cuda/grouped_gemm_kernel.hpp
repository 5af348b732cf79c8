#pragma once
/// The backend's own grouped GEMM for Hopper (sm_90a), for MoE experts with few rows each: one persistent launch whose
/// clusters of four blocks walk the tile units of every expert (cuda_plan/grouped_gemm_tiles.hpp), so that the
/// experts' weight traffic overlaps their math instead of each expert's GEMM filling a part of the GPU in turn. Per
/// block: one producer thread streams X and W tiles with the copy engine (TMA, 128-byte swizzle, through one tensor map
/// per expert's W and X, since the engine's experts are separate allocations) into a 3-stage shared-memory ring,
/// completing on mbarriers; two consumer warpgroups each multiply 64 rows × 256 columns with wgmma (fp32 accumulators
/// in registers; 64 × 128 each for a remainder of at most 64 rows), write them as bf16 to a staging area in shared
/// memory, from which the copy engine stores the rows within the expert (one bulk copy per row) while the warpgroup
/// goes on to its next tile. grouped_gemm.hpp decides when to use it.
///
/// Why clusters of four: the L2 is the kernel's busiest unit (84 % of its peak by Nsight Compute on H200, DRAM 53 %),
/// so what counts is the bytes each block reads from L2 per flop. A unit is mostly a 2 × 2 quad of one expert's tiles
/// (row blocks 2p, 2p + 1 × column blocks 2q, 2q + 1; block r = i + 2j takes row i, column j): the two blocks of a row
/// share its X tile, each loading one 64-row half multicast to both (cluster mask 0b0101 << i), and the two blocks of a
/// column share its W tile, each loading two of its four 64-column boxes multicast to both (mask 0b0011 << 2j). Per
/// block and 64-deep k stage that is X 8 KB + W 16 KB read for a 128 × 256 × 64 step, against X 16 KB + W 16 KB in the
/// two-block clusters (pairs of row blocks sharing W) before: 0.75 × the L2 reads per flop. An expert with an odd
/// number of row blocks has its last row block as units of 4 column blocks sharing X (1 × 4: blocks 0 and 1 load its
/// two halves into all four, each block its own W), and where the column blocks are not a multiple of 4 (no model of
/// the zoo) a unit's tiles past the last column block are empty: that block still loads its share of the unit's
/// multicast operands and releases the ring slots without math, so every block walks the same units and ring phases.
/// Every consumer warp releases a ring slot on all four blocks' `empty` barriers (which blocks write into a slot
/// changes with the unit's kind). The two warpgroups share each tile (cooperative), not take turns on separate ones: a
/// warpgroup's own 128 × 128 tile needs 1.5 × the L2 reads per flop; that ping-pong lost 9–31 %
/// (docs/performance.md "MoE expert GEMMs" has every variant's figures on H200).

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
  int groups = 0;                 ///< GroupedTileSchedule's
  int pairs = 0;                  ///< GroupedTileSchedule::units (the field's name is from the two-block clusters)
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
