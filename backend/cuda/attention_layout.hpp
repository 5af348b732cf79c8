#pragma once
/// Small kernels that move fused attention's results (attention_cudnn.hpp) into AttentionArgs' layouts
/// (kernels.hpp): cuDNN writes its softmax statistics per (request, head, query) and its output in bf16, while
/// AttentionArgs keeps the log-sum-exp per (request, query, head) and the partial form of ring CP wants fp32 rows;
/// strided-query attention (attention_strided.hpp) merges fp32 partials and writes them back as bf16 rows.

#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

/// lse[(b·q_tokens + row_offset + r)·lse_heads + head_offset + h] = stats[(b·heads + h)·rows + r] for b < batch,
/// h < heads, r < rows: the statistics of `heads` heads from head_offset on, of lse_heads in all.
void launch_stats_to_lse(const float* stats, float* lse, std::int64_t batch, std::int64_t heads, std::int64_t rows,
                         std::int64_t lse_heads, std::int64_t head_offset, std::int64_t q_tokens,
                         std::int64_t row_offset, cudaStream_t stream);

/// lse[(b·q_tokens + r)·heads + h] = −inf for b < batch, r < rows, h < heads: queries that see no key.
void launch_lse_no_keys(float* lse, std::int64_t batch, std::int64_t rows, std::int64_t q_tokens, std::int64_t heads,
                        cudaStream_t stream);

/// dst[b·dst_batch_stride + r·dst_row_stride + c] = src[b·src_batch_stride + r·src_row_stride + c] (bf16 → fp32) for
/// b < batch, r < rows, c < cols (strides in elements).
void launch_bf16_rows_to_f32(const void* src, std::int64_t src_row_stride, std::int64_t src_batch_stride, float* dst,
                             std::int64_t dst_row_stride, std::int64_t dst_batch_stride, std::int64_t batch,
                             std::int64_t rows, std::int64_t cols, cudaStream_t stream);

/// dst[b·dst_batch_stride + r·dst_row_stride + c] = bf16(src[b·src_batch_stride + r·src_row_stride + c]) (fp32 →
/// bf16) for b < batch, r < rows, c < cols (strides in elements).
void launch_f32_rows_to_bf16(const float* src, std::int64_t src_row_stride, std::int64_t src_batch_stride, void* dst,
                             std::int64_t dst_row_stride, std::int64_t dst_batch_stride, std::int64_t batch,
                             std::int64_t rows, std::int64_t cols, cudaStream_t stream);

}  // namespace paratwin::cuda
