#pragma once
/// Tensor maps (CUtensorMap) for the copy engine's 2-D bulk tensor loads (hopper_ops.cuh's tma_load_2d), encoded on
/// the host through the driver's cuTensorMapEncodeTiled, reached through the runtime's entry-point query so that the
/// backend does not link against libcuda. Used by indexer_wgmma.cu, grouped_gemm_kernel.cu and
/// fp8_grouped_gemm_kernel.cu.
#include <cuda.h>

#include <cstdint>

namespace paratwin::cuda {

/// Whether the driver offers cuTensorMapEncodeTiled (looked up once per process).
[[nodiscard]] bool tensor_map_encoder_available();

/// Encodes `map` for a row-major bf16 matrix of `rows` × `cols` at `base` (16-byte aligned; rows `row_stride_bytes`
/// apart, a multiple of 16) read in boxes of `box_rows` × 64 columns (one 128-byte row per box row), 128-byte swizzled
/// in shared memory, zeros for elements outside the matrix. False when the encoder is unavailable or the driver
/// refuses the map (a bad alignment, size or stride).
[[nodiscard]] bool encode_bf16_tensor_map_sw128(CUtensorMap& map, const void* base, std::int64_t rows,
                                                std::int64_t cols, std::int64_t row_stride_bytes, unsigned box_rows);

/// As encode_bf16_tensor_map_sw128 for a matrix of 1-byte elements (fp8 e4m3, copied as bytes) read in boxes of
/// `box_rows` × 128 columns (again one 128-byte swizzle row per box row).
[[nodiscard]] bool encode_fp8_tensor_map_sw128(CUtensorMap& map, const void* base, std::int64_t rows, std::int64_t cols,
                                               std::int64_t row_stride_bytes, unsigned box_rows);

/// The box's width: 64 bf16 columns, one 128-byte swizzle row.
inline constexpr unsigned kTensorMapBoxCols = 64;
/// The fp8 box's width: 128 columns of one byte.
inline constexpr unsigned kFp8TensorMapBoxCols = 128;

}  // namespace paratwin::cuda
