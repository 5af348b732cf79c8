#include "backend/cuda/tensor_map.hpp"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

namespace paratwin::cuda {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const auto encode = []() -> PFN_cuTensorMapEncodeTiled_v12000 {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess) return nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// A row-major matrix read in boxes of `box_rows` rows × one 128-byte swizzle row (`box_cols` elements).
bool encode_tensor_map_sw128(CUtensorMap& map, CUtensorMapDataType type, unsigned box_cols, const void* base,
                             std::int64_t rows, std::int64_t cols, std::int64_t row_stride_bytes, unsigned box_rows) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr || rows < 1 || cols < 1 || row_stride_bytes < 1) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides_bytes[1] = {static_cast<cuuint64_t>(row_stride_bytes)};
  const cuuint32_t box[2] = {box_cols, box_rows};
  const cuuint32_t element_strides[2] = {1, 1};
  return encode(&map, type, 2, const_cast<void*>(base), dims, strides_bytes, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

bool tensor_map_encoder_available() {
  return tensor_map_encoder() != nullptr;
}

bool encode_bf16_tensor_map_sw128(CUtensorMap& map, const void* base, std::int64_t rows, std::int64_t cols,
                                  std::int64_t row_stride_bytes, unsigned box_rows) {
  return encode_tensor_map_sw128(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, kTensorMapBoxCols, base, rows, cols,
                                 row_stride_bytes, box_rows);
}

bool encode_fp8_tensor_map_sw128(CUtensorMap& map, const void* base, std::int64_t rows, std::int64_t cols,
                                 std::int64_t row_stride_bytes, unsigned box_rows) {
  return encode_tensor_map_sw128(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, kFp8TensorMapBoxCols, base, rows, cols,
                                 row_stride_bytes, box_rows);
}

}  // namespace paratwin::cuda
