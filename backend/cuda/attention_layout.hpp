#pragma once
/// Small kernels that move fused attention's results (attention_cudnn.hpp) into AttentionArgs' layouts
/// (kernels.hpp): cuDNN writes its softmax statistics per (request, head, query) and its output in bf16, while
/// AttentionArgs keeps the log-sum-exp per (request, query, head) and the partial form of ring CP wants fp32 rows;
/// strided-query attention (attention_strided.hpp) merges bf16 partials by their log-sum-exps.

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

/// Merges two attention results of the same queries over disjoint key sets: `a` and `b` are bf16 rows of `heads` heads
/// × `dim` (row q·heads + h, packed) with their log-sum-exps per (query, head) (−inf: the query saw no key of that
/// set). dst[q·dst_row_stride + h·dim + d] = (e^(a_lse − m) · a + e^(b_lse − m) · b) / (e^(a_lse − m) + e^(b_lse − m)),
/// m the larger log-sum-exp, in fp32, rounded to bf16 (zeros where both are −inf). `dim` and `dst_row_stride` are
/// multiples of 8 and every pointer 16-byte aligned, as cuDNN's fused attention needs anyway. `dst` may be `a` (packed
/// rows): each element is read before it is written. When `merged_lse` is set (it may be `a_lse`), it gets the merged
/// log-sum-exps, after every element was merged.
void launch_merge_bf16_attention(const void* a, const float* a_lse, const void* b, const float* b_lse,
                                 std::int64_t queries, std::int64_t heads, std::int64_t dim, void* dst,
                                 std::int64_t dst_row_stride, float* merged_lse, cudaStream_t stream);

}  // namespace paratwin::cuda
