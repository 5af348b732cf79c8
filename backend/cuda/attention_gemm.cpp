#include "backend/cuda/attention_gemm.hpp"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;
constexpr i64 kBytesPerScore = 4 + 2;  // fp32 S and bf16 P
constexpr i64 kQueryBlock = 512;       // queries per GEMM: large enough to keep the tensor cores busy
// Key counts and the rows of S and P are kept whole 16-byte vectors: round-robin CP blocks end at odd key counts, and
// an odd GEMM k made cuBLAS 2.6× slower (Llama-3.1-8B 32K, CP=2 round-robin, 2 layers: 442 → 168 ms per step, H200).
constexpr i64 kRowAlignElems = 8;

i64 padded(i64 n) {
  return (n + kRowAlignElems - 1) / kRowAlignElems * kRowAlignElems;
}

// Keys [0, n) that a query at position `qpos` may see (kv positions increase with the key index).
i64 visible_keys(const AttentionArgs& a, i64 qpos) {
  if (!a.causal) return a.kv_tokens;
  if (qpos < a.kv_start) return 0;
  if (a.kv_stride <= 0) return a.kv_tokens;
  return std::min(a.kv_tokens, (qpos - a.kv_start) / a.kv_stride + 1);
}

}  // namespace

void attention_gemm(const AttentionArgs& a, cublasHandle_t blas, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream) {
  PARATWIN_ASSERT(a.key_index == nullptr, "attention_gemm is dense attention");
  if (a.batch * a.q_tokens * a.heads == 0) return;
  if (a.kv_heads <= 0 || a.heads % a.kv_heads != 0) {
    fail("attention with {} query heads over {} KV heads: the query heads must form equal groups", a.heads, a.kv_heads);
  }
  const i64 group = a.heads / a.kv_heads;
  // Heads of one batched GEMM: a whole KV-head group shares one K and V (stride 0); without GQA every head has its
  // own K and V at a constant stride, so any run of heads batches.
  i64 heads_per_call = group == 1 ? a.heads : group;
  i64 q_block = std::min(a.q_tokens, kQueryBlock);
  const auto fits = [&] {
    return heads_per_call * q_block * padded(std::max<i64>(1, a.kv_tokens)) * kBytesPerScore <=
           static_cast<i64>(workspace_bytes);
  };
  while (!fits() && heads_per_call > 1) heads_per_call = (heads_per_call + 1) / 2;
  if (group > 1) {
    while (group % heads_per_call != 0) --heads_per_call;  // calls stay inside one group
  }
  while (!fits() && q_block > 1) q_block = (q_block + 1) / 2;
  if (!fits()) {
    fail("attention over {} keys needs {} MiB of workspace for one query row, more than the {} MiB the backend has",
         a.kv_tokens, a.kv_tokens * kBytesPerScore >> 20, workspace_bytes >> 20);
  }
  auto* scores = static_cast<float*>(workspace);
  void* probs = scores + heads_per_call * q_block * padded(std::max<i64>(1, a.kv_tokens));
  const float zero = 0.0f;
  const float one = 1.0f;
  const cudaDataType out_type = a.out_f32 != nullptr ? CUDA_R_32F : CUDA_R_16BF;
  const i64 out_elem_bytes = a.out_f32 != nullptr ? 4 : 2;
  char* out_base = a.out_f32 != nullptr ? reinterpret_cast<char*>(a.out_f32) : static_cast<char*>(a.out);
  PARATWIN_CUBLAS_CHECK(cublasSetStream(blas, stream));
  for (i64 b = 0; b < a.batch; ++b) {
    for (i64 q0 = 0; q0 < a.q_tokens; q0 += q_block) {
      const i64 q_rows = std::min(q_block, a.q_tokens - q0);
      // Keys the block's GEMMs cover: the visible ones, rounded up to whole 16-byte vectors where keys exist (the
      // extra ones are masked by the softmax: they lie after every query of the block, or past the last key).
      const i64 kv_len = std::min(a.kv_tokens, padded(visible_keys(a, a.q_start + (q0 + q_rows - 1) * a.q_stride)));
      const i64 ld = padded(kv_len);
      for (i64 h0 = 0; h0 < a.heads; h0 += heads_per_call) {
        const i64 nh = std::min(heads_per_call, a.heads - h0);
        const i64 kvh = h0 / group;
        char* out = out_base + ((b * a.q_tokens + q0) * a.out_row_stride + h0 * a.head_dim_v) * out_elem_bytes;
        if (kv_len == 0) {
          // No query of the block sees a key: zero output rows, −inf log-sum-exps (the softmax writes those).
          PARATWIN_CUDA_CHECK(cudaMemset2DAsync(out, static_cast<std::size_t>(a.out_row_stride * out_elem_bytes), 0,
                                                static_cast<std::size_t>(nh * a.head_dim_v * out_elem_bytes),
                                                static_cast<std::size_t>(q_rows), stream));
          if (a.lse != nullptr) {
            launch_masked_softmax(scores, probs, nh * q_rows, q_rows, 1, 1, h0, q0, b, a, stream);
          }
          continue;
        }
        const auto* q = static_cast<const char*>(a.q) + ((b * a.q_tokens + q0) * a.q_row_stride + h0 * a.head_dim_qk) * 2;
        const auto* k = static_cast<const char*>(a.k) + (b * a.kv_batch_rows * a.k_row_stride + kvh * a.head_dim_qk) * 2;
        const auto* v = static_cast<const char*>(a.v) + (b * a.kv_batch_rows * a.v_row_stride + kvh * a.head_dim_v) * 2;
        // Column-major view: Sᵀ (kv_len × q_rows) = Kᵀ-op(K) · Q per head.
        PARATWIN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(kv_len), static_cast<int>(q_rows),
            static_cast<int>(a.head_dim_qk), &a.scale, k, CUDA_R_16BF, static_cast<int>(a.k_row_stride),
            group == 1 ? a.head_dim_qk : 0, q, CUDA_R_16BF, static_cast<int>(a.q_row_stride), a.head_dim_qk, &zero,
            scores, CUDA_R_32F, static_cast<int>(ld), q_rows * ld, static_cast<int>(nh), CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
        launch_masked_softmax(scores, probs, nh * q_rows, q_rows, kv_len, ld, h0, q0, b, a, stream);
        // Oᵀ (head_dim_v × q_rows) = Vᵀ · Pᵀ per head, written into the output rows at the head's columns.
        PARATWIN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(a.head_dim_v), static_cast<int>(q_rows),
            static_cast<int>(kv_len), &one, v, CUDA_R_16BF, static_cast<int>(a.v_row_stride),
            group == 1 ? a.head_dim_v : 0, probs, CUDA_R_16BF, static_cast<int>(ld), q_rows * ld, &zero, out,
            out_type, static_cast<int>(a.out_row_stride), a.head_dim_v, static_cast<int>(nh), CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
      }
    }
  }
}

}  // namespace paratwin::cuda
