// Layout kernels of fused attention (attention_layout.hpp): memory-bound copies, one thread per element.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/attention_layout.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;

constexpr int kBlock = 256;

unsigned blocks_for(i64 n) {
  const i64 b = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}

__global__ void stats_to_lse_kernel(const float* stats, float* lse, i64 batch, i64 heads, i64 rows, i64 lse_heads,
                                    i64 head_offset, i64 q_tokens, i64 row_offset) {
  const i64 total = batch * heads * rows;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    // i walks the destination order (request, query, head) so that the writes coalesce.
    const i64 h = i % heads, r = i / heads % rows, b = i / (heads * rows);
    lse[(b * q_tokens + row_offset + r) * lse_heads + head_offset + h] = stats[(b * heads + h) * rows + r];
  }
}

__global__ void lse_no_keys_kernel(float* lse, i64 batch, i64 rows, i64 q_tokens, i64 heads) {
  const i64 per_batch = rows * heads;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < batch * per_batch;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    lse[i / per_batch * q_tokens * heads + i % per_batch] = -__int_as_float(0x7f800000);
  }
}

__global__ void bf16_rows_to_f32_kernel(const __nv_bfloat16* src, i64 src_row_stride, i64 src_batch_stride,
                                        float* dst, i64 dst_row_stride, i64 dst_batch_stride, i64 batch, i64 rows,
                                        i64 cols) {
  const i64 total = batch * rows * cols;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 c = i % cols, r = i / cols % rows, b = i / (cols * rows);
    dst[b * dst_batch_stride + r * dst_row_stride + c] =
        __bfloat162float(src[b * src_batch_stride + r * src_row_stride + c]);
  }
}

__global__ void f32_rows_to_bf16_kernel(const float* src, i64 src_row_stride, i64 src_batch_stride,
                                        __nv_bfloat16* dst, i64 dst_row_stride, i64 dst_batch_stride, i64 batch, i64 rows,
                                        i64 cols) {
  const i64 total = batch * rows * cols;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 c = i % cols, r = i / cols % rows, b = i / (cols * rows);
    dst[b * dst_batch_stride + r * dst_row_stride + c] =
        __float2bfloat16(src[b * src_batch_stride + r * src_row_stride + c]);
  }
}

}  // namespace

void launch_stats_to_lse(const float* stats, float* lse, i64 batch, i64 heads, i64 rows, i64 lse_heads,
                         i64 head_offset, i64 q_tokens, i64 row_offset, cudaStream_t stream) {
  if (batch * heads * rows == 0) return;
  stats_to_lse_kernel<<<blocks_for(batch * heads * rows), kBlock, 0, stream>>>(stats, lse, batch, heads, rows,
                                                                                 lse_heads, head_offset, q_tokens,
                                                                                 row_offset);
}

void launch_lse_no_keys(float* lse, i64 batch, i64 rows, i64 q_tokens, i64 heads, cudaStream_t stream) {
  if (batch * rows * heads == 0) return;
  lse_no_keys_kernel<<<blocks_for(batch * rows * heads), kBlock, 0, stream>>>(lse, batch, rows, q_tokens, heads);
}

void launch_bf16_rows_to_f32(const void* src, i64 src_row_stride, i64 src_batch_stride, float* dst,
                             i64 dst_row_stride, i64 dst_batch_stride, i64 batch, i64 rows, i64 cols,
                             cudaStream_t stream) {
  if (batch * rows * cols == 0) return;
  bf16_rows_to_f32_kernel<<<blocks_for(batch * rows * cols), kBlock, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(src), src_row_stride, src_batch_stride, dst, dst_row_stride, dst_batch_stride,
      batch, rows, cols);
}

void launch_f32_rows_to_bf16(const float* src, i64 src_row_stride, i64 src_batch_stride, void* dst,
                             i64 dst_row_stride, i64 dst_batch_stride, i64 batch, i64 rows, i64 cols,
                             cudaStream_t stream) {
  if (batch * rows * cols == 0) return;
  f32_rows_to_bf16_kernel<<<blocks_for(batch * rows * cols), kBlock, 0, stream>>>(
      src, src_row_stride, src_batch_stride, static_cast<__nv_bfloat16*>(dst), dst_row_stride, dst_batch_stride, batch,
      rows, cols);
}

}  // namespace paratwin::cuda
