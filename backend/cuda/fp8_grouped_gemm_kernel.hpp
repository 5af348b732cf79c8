#pragma once
/// The backend's own grouped GEMM for fp8 experts with DeepSeek-V3's block scales on Hopper (sm_90a): Y_g [rows_g × n]
/// (bf16) = X_g [rows_g × k] · W_gᵀ for every expert g in one persistent launch, as grouped_gemm_kernel.hpp does for
/// bf16, on the operands exactly as Fp8GroupedGemm keeps them (fp8_grouped_gemm.hpp, scale layouts of fp8_gemm.hpp):
/// X and Y one block of rows per expert, expert after expert; W [n × k] per expert (k-contiguous, the fp8 "TN" form),
/// expert after expert; X's 1×128-group scales one block per expert of its rows rounded up to 4, k-group major; W's
/// 128×128-block scales n-block major, k-blocks padded to a multiple of 4.
///
/// Same structure and tiles as the bf16 kernel: clusters of two blocks walk cuda_plan::decode_grouped_pair's tile
/// pairs of 128 rows × 256 columns, each cluster's next pair claimed from a counter when it starts one
/// (cluster_pair_queue.cuh: the pairs in flight stay about one wave of consecutive indices, the sharers of a weight
/// block together), one producer thread per block loads X and W by TMA (128-byte swizzle, one tensor map over all of
/// X and one over all experts' W) into a 3-stage mbarrier ring, the pair's shared operand multicast to both blocks;
/// two consumer warpgroups multiply 64 rows × 256 columns each (64 × 128 each for a remainder of at most 64 rows). What block scaling changes: a ring stage is one 128-deep k-block (128 bytes of e4m3 per row, one swizzle
/// row); per k-block and 128-column half (one weight-scale block), 4 wgmma m64n128k32 e4m3 fill a partial fp32
/// accumulator that the warpgroup then adds into its running fp32 sum scaled by x_scale[row, kb] · w_scale[n-block,
/// kb]. Registers: the sum of 256 columns (128 per thread) and one partial of 128 columns (64), reused by both halves;
/// a second partial, which would let one half's wgmma run while the other's is scaled, does not fit beside them (256
/// columns of sum and two partials: 256 registers). The producer copies each k-block's scales of the tile (128
/// activation scales, 2 × 16 bytes of weight scales) into the ring stage beside its operands; the consumers read them
/// from shared memory while the wgmma run.
/// Measured on H200 (docs/performance.md "MoE expert GEMMs", the fp8 kernel's bullets): 790-920 TFLOP/s, 0.61-0.81 ×
/// the dense block-scaled fp8 GEMM (0.61-0.72 × at DeepSeek-V3.2's 8K shapes), ahead of the cuBLASLt streams at the
/// four 8K shapes (cuda_plan::AutoFp8MoeGemmRule), behind at 32K. Reading the scales from L2 (global loads issued
/// beside the wgmma, awaited before each promotion) instead ran 660-800 TFLOP/s, 0.51-0.72 × in the same runs: likely
/// (reasoned, not measured by counters) because an L2 round trip takes about as long as a half's 4 wgmma (64 × 128 ×
/// 128 multiply-adds: ~256 cycles at an SM's fp8 rate), so each promotion waited for its scales.
/// Output: bf16 through a shared-memory staging area and bulk stores, the rows of each expert only (no row rounding:
/// the kernel writes nothing past an expert's rows).

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

/// Columns of one tile: two 128-wide weight-scale blocks (cuda_plan::kGroupedTileCols, the bf16 kernel's tile walk).
inline constexpr int kFp8GroupedTileCols = 256;

/// Whether the kernel computes an n × k problem: whole 256-column tiles and whole 128-deep k-blocks, in int range.
[[nodiscard]] constexpr bool fp8_grouped_kernel_supports(std::int64_t n, std::int64_t k) {
  return n >= kFp8GroupedTileCols && k >= 128 && n % kFp8GroupedTileCols == 0 && k % 128 == 0 && n <= (1 << 30) &&
         k <= (1 << 30);
}

struct Fp8GroupedKernelArgs {
  CUtensorMap x_map{};  ///< encode_fp8_grouped_tensor_maps'
  CUtensorMap w_map{};
  /// Device copy of Fp8GroupedGemm::kernel_table(): 2 ints per non-empty group (cuda_plan::GroupedTileSchedule's
  /// {rows, first pair}), then 3 per non-empty group: {first row in X and Y, first row of its scale block, expert}.
  const int* table = nullptr;
  const float* x_scale = nullptr;  ///< every expert's block, as Fp8GroupedGemm::Operands; 16-byte aligned
  const float* w_scale = nullptr;  ///< weight_scale_count floats per expert; 16-byte aligned
  void* y = nullptr;               ///< bf16, 16-byte aligned
  /// One int of device memory that only this launch uses while it runs: the clusters claim their pairs from it (the
  /// launch zeroes it first, on its stream).
  int* pair_counter = nullptr;
  int groups = 0, pairs = 0;       ///< non-empty groups, tile pairs
  int n = 0, k = 0;                ///< fp8_grouped_kernel_supports(n, k)
};

/// Encodes the maps the kernel loads through: X (`x_rows` × k bytes, boxes of 64 rows × 128 k) and W (`experts` · n
/// rows × k bytes, boxes of 64 n-rows × 128 k). Rows past an expert's read the next expert's (their products are never
/// stored); rows past `x_rows` read as zeros. False where a base is not 16-byte aligned, tensor maps are unavailable,
/// or the driver refuses a map.
[[nodiscard]] bool encode_fp8_grouped_tensor_maps(const void* x, std::int64_t x_rows, const void* w,
                                                  std::int64_t experts, std::int64_t n, std::int64_t k,
                                                  CUtensorMap& x_map, CUtensorMap& w_map);

/// Enqueues the kernel on `stream` (current device, compute capability 9.0). CUDA errors throw paratwin::Error.
void launch_fp8_grouped_gemm_kernel(const Fp8GroupedKernelArgs& args, cudaStream_t stream);

}  // namespace paratwin::cuda
