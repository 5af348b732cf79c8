#pragma once
/// The backend's own grouped GEMM for fp8 experts with DeepSeek-V3's block scales on Hopper (sm_90a): Y_g [rows_g × n]
/// (bf16) = X_g [rows_g × k] · W_gᵀ for every expert g in one persistent launch, as grouped_gemm_kernel.hpp does for
/// bf16, on the operands exactly as Fp8GroupedGemm keeps them (fp8_grouped_gemm.hpp, scale layouts of fp8_gemm.hpp):
/// X and Y one block of rows per expert, expert after expert; W [n × k] per expert (k-contiguous, the fp8 "TN" form),
/// expert after expert; X's 1×128-group scales one block per expert of its rows rounded up to 4, k-group major; W's
/// 128×128-block scales n-block major, k-blocks padded to a multiple of 4.
///
/// Same structure as the bf16 kernel: clusters of two blocks walk cuda_plan::decode_grouped_pair's tile pairs (here
/// 128 rows × 128 columns), one producer thread per block loads X and W by TMA (128-byte swizzle, one tensor map over
/// all of X and one over all experts' W) into a 5-stage mbarrier ring, the pair's shared operand multicast to both
/// blocks; two consumer warpgroups multiply 64 rows × 128 columns each. What block scaling changes: a ring stage is one
/// 128-deep k-block (128 bytes of e4m3 per row, one swizzle row), multiplied by 4 wgmma m64n128k32 e4m3 into a
/// partial fp32 accumulator that the warpgroup then adds into its running fp32 sum scaled by x_scale[row, kb] ·
/// w_scale[n-block, kb] (two accumulator sets of 64 registers per thread: a 256-column tile per warpgroup would need
/// 256). The tile is thus one scale block wide, and each thread needs 2 activation scales and 1 weight scale per
/// k-block, read from global memory (L2) while its wgmma run. Output: bf16 through a shared-memory staging area and
/// bulk stores, the rows of each expert only (no row rounding: the kernel writes nothing past an expert's rows).

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

/// Columns of one tile: one 128-wide weight-scale block.
inline constexpr int kFp8GroupedTileCols = 128;

/// Whether the kernel computes an n × k problem: whole 128-column tiles and whole 128-deep k-blocks, in int range.
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
  const float* x_scale = nullptr;  ///< every expert's block, as Fp8GroupedGemm::Operands
  const float* w_scale = nullptr;  ///< weight_scale_count floats per expert
  void* y = nullptr;               ///< bf16, 16-byte aligned
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
