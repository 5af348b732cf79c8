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

// Eight elements (one 16-byte vector) per step: dim is a multiple of 8 and the rows 16-byte aligned (cuDNN's fused
// attention, which wrote both inputs, requires it).
__global__ void merge_bf16_attention_kernel(const uint4* a, const float* a_lse, const uint4* b, const float* b_lse,
                                            i64 queries, i64 heads, i64 dim, __nv_bfloat16* dst, i64 dst_row_stride) {
  const i64 vectors = queries * heads * dim / 8, row_vectors = heads * dim / 8;
  for (i64 v = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; v < vectors;
       v += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 row = v * 8 / dim, q = v / row_vectors;
    const float la = a_lse[row], lb = b_lse[row];
    const float m = fmaxf(la, lb);
    float wa = 0.0f, wb = 0.0f;
    if (m != -__int_as_float(0x7f800000)) {
      const float ea = __expf(la - m), eb = __expf(lb - m);
      wa = ea / (ea + eb);
      wb = eb / (ea + eb);
    }
    const uint4 va = a[v], vb = b[v];
    const auto* pa = reinterpret_cast<const __nv_bfloat162*>(&va);
    const auto* pb = reinterpret_cast<const __nv_bfloat162*>(&vb);
    uint4 out;
    auto* po = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 fa = __bfloat1622float2(pa[k]), fb = __bfloat1622float2(pb[k]);
      po[k] = __floats2bfloat162_rn(wa * fa.x + wb * fb.x, wa * fa.y + wb * fb.y);
    }
    *reinterpret_cast<uint4*>(dst + q * dst_row_stride + (v % row_vectors) * 8) = out;
  }
}

__global__ void merge_lse_kernel(const float* a_lse, const float* b_lse, i64 rows, float* merged_lse) {
  for (i64 r = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<i64>(gridDim.x) * blockDim.x) {
    const float la = a_lse[r], lb = b_lse[r];
    const float m = fmaxf(la, lb);
    merged_lse[r] = m == -__int_as_float(0x7f800000) ? m : m + __logf(__expf(la - m) + __expf(lb - m));
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

void launch_merge_bf16_attention(const void* a, const float* a_lse, const void* b, const float* b_lse, i64 queries,
                                 i64 heads, i64 dim, void* dst, i64 dst_row_stride, float* merged_lse,
                                 cudaStream_t stream) {
  const i64 vectors = queries * heads * dim / 8;
  if (vectors == 0) return;
  merge_bf16_attention_kernel<<<blocks_for(vectors), kBlock, 0, stream>>>(
      static_cast<const uint4*>(a), a_lse, static_cast<const uint4*>(b), b_lse, queries, heads, dim,
      static_cast<__nv_bfloat16*>(dst), dst_row_stride);
  // After the merge (same stream): every element read a_lse before it changes.
  if (merged_lse != nullptr) {
    merge_lse_kernel<<<blocks_for(queries * heads), kBlock, 0, stream>>>(a_lse, b_lse, queries * heads, merged_lse);
  }
}

}  // namespace paratwin::cuda
