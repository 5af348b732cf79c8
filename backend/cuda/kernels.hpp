#pragma once
/// The CUDA backend's own kernels. Activations are bf16 unless a parameter says otherwise; every launcher enqueues on
/// `stream` and returns at once. Pointers are device pointers. The memory-bound layer kernels (RMSNorm, RoPE, SwiGLU,
/// add, MoE unpermute and combine) are in elementwise_kernels.cu, written for HBM speed; the rest in kernels.cu.

#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

/// Fills a rows × cols shard of a seeded random tensor: element (r, c) is the full tensor's element
/// (row_offset + r, col_map ? col_map[c] : c) of `full_cols` columns, = bias + scale · u with u uniform in [−1, 1)
/// drawn from (seed, index). `fp32`: float elements, else bf16.
void launch_fill_random(void* dst, bool fp32, std::int64_t rows, std::int64_t cols, std::int64_t row_offset,
                        const int* col_map, std::int64_t full_cols, std::uint64_t seed, float scale, float bias,
                        cudaStream_t stream);

/// Fills `count` fp8 (e4m3) elements with scale · u, u uniform in [−1, 1) drawn from (seed, index).
void launch_fill_random_fp8(void* dst, std::int64_t count, std::uint64_t seed, float scale, cudaStream_t stream);

/// RMSNorm of `rows` rows of n elements. Source row r is s = row_map ? row_map[r] : r, at
/// in + (s / inner)·outer_stride + (s % inner)·n (inner = 1, outer_stride = n for a plain matrix; per-head norms
/// pass inner = heads). `out == in` normalizes in place with the same addressing, else out is rows × n.
void launch_rmsnorm(const void* in, void* out, const void* weight, std::int64_t rows, std::int64_t n,
                    std::int64_t inner, std::int64_t outer_stride, const int* row_map, float eps, cudaStream_t stream);

/// Residual add fused into the RMSNorm after it (SGLang's fused_add_rmsnorm), on `rows` plain rows of n elements:
/// residual += update (rounded to bf16, the residual stream's type), then out = rmsnorm(residual) · weight with the
/// sum of squares taken on that rounded sum, so `out` equals launch_rmsnorm of the new residual. One launch, one pass
/// over the rows. `out` may be `update` (SGLang's in-place form); it must not overlap `residual`, nor part of `update`
/// (PARATWIN_ASSERT): both outputs are kept, and normed rows written over the residual would replace the sum.
void launch_add_rmsnorm(void* residual, const void* update, void* out, const void* weight, std::int64_t rows,
                        std::int64_t n, float eps, cudaStream_t stream);

/// Rotary embedding (rotate-half) in place on `heads` heads of head_dim at x + t·row_stride + h·head_dim, for
/// tokens t at positions[t] (t when null).
void launch_rope(void* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, std::int64_t row_stride,
                 const int* positions, float theta, cudaStream_t stream);

/// Copies each token's K and V heads out of a [q heads | k heads | v heads] QKV row into row dst_rows[t] of `dst`
/// (kv rows of 2·kv_heads·head_dim: K heads then V heads).
void launch_scatter_kv(const void* qkv, void* dst, std::int64_t tokens, std::int64_t q_heads, std::int64_t kv_heads,
                       std::int64_t head_dim, const int* dst_rows, cudaStream_t stream);

struct AttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  std::int64_t q_row_stride = 0, k_row_stride = 0, v_row_stride = 0, out_row_stride = 0;  ///< elements per row
  std::int64_t batch = 1, q_tokens = 0, kv_tokens = 0;
  std::int64_t kv_batch_rows = 0;  ///< rows between requests in K/V (≥ kv_tokens)
  std::int64_t heads = 0, kv_heads = 1, head_dim_qk = 0, head_dim_v = 0;
  std::int64_t q_start = 0, q_stride = 1, kv_start = 0, kv_stride = 1;
  bool causal = true;
  float scale = 1;
  const int* key_index = nullptr;  ///< sparse attention: per query `keys_per_query` key indices (−1: none)
  std::int64_t keys_per_query = 0;
  /// Partial attention over one block of keys (ring CP): when set, the output is fp32 here (same row addressing as
  /// `out`, which is then unused) and `lse` gets the log-sum-exp of the scaled scores per (request, query, head) at
  /// (b·q_tokens + q)·heads + h, −inf for a query that sees no key of the block (its output row is then zeros).
  float* out_f32 = nullptr;
  float* lse = nullptr;
};
/// Dense or index-sparse attention with an online softmax, one warp per (request, query, head); head dims ≤ 768.
void launch_attention(const AttentionArgs& a, cudaStream_t stream);

/// The softmax step of attention_gemm (attention_gemm.hpp): `rows` = heads_in_block × q_rows rows of `kv_len` fp32
/// scaled scores, `ld` apart; row r is head h0 + r / q_rows and query q0 + r % q_rows of `a` (its position from
/// a.q_start and a.q_stride). Keys after the query's position are masked when a.causal. Writes P (bf16, same layout)
/// and, when a.lse is set, the log-sum-exp at a.lse[(batch_index·q_tokens + query)·heads + head] (−inf for a row that
/// sees no key).
void launch_masked_softmax(const float* scores, void* probs, std::int64_t rows, std::int64_t q_rows,
                           std::int64_t kv_len, std::int64_t ld, std::int64_t h0, std::int64_t q0,
                           std::int64_t batch_index, const AttentionArgs& a, cudaStream_t stream);

/// Merges partial attention outputs of `rows` (query, head) pairs with head dim `dim` (fp32, rows × dim, and their
/// log-sum-exps) into a running output and log-sum-exp: the softmax over the union of both key sets. `first`: the
/// running state is empty and is overwritten (and not read). Four elements per thread where dim is a multiple of 4
/// and both outputs are 16-byte aligned, else one.
void launch_attention_merge(float* running_out, float* running_lse, const float* part_out, const float* part_lse,
                            std::int64_t rows, std::int64_t dim, bool first, cudaStream_t stream);

/// dst[i] = bf16(src[i]) over `count` elements (four per thread where count is a multiple of 4, src 16-byte and dst
/// 8-byte aligned).
void launch_to_bf16(const float* src, void* dst, std::int64_t count, cudaStream_t stream);

/// Holds `stream` until the host-mapped `*flag` equals `value`, or `timeout_ns` passed (so a host that cannot reach
/// the release, e.g. blocked on a full launch queue, never hangs the GPU). The engine's step gate.
void launch_wait_flag(const volatile int* flag, int value, std::int64_t timeout_ns, cudaStream_t stream);

/// out[r][j] = silu(gu[r][j]) · gu[r][n + j] (bf16).
void launch_silu_mul(const void* gate_up, void* out, std::int64_t rows, std::int64_t n, cudaStream_t stream);

/// y += x over `count` bf16 elements.
void launch_add(void* y, const void* x, std::int64_t count, cudaStream_t stream);

/// dst row r = src row map[r] (r when null; a negative index writes zeros), rows of row_bytes bytes.
void launch_gather_rows(const void* src, void* dst, std::int64_t rows, std::int64_t row_bytes, const int* map,
                        cudaStream_t stream);

/// Router: softmax (or sigmoid) scores of bf16 logits [tokens × experts], top-k experts per token → ids, weights
/// [tokens × topk] (topk at most 32): the experts of the k largest logits, the lowest expert first among equal ones,
/// and -1 with weight 0 where a row has fewer than topk experts. A NaN logit counts as -inf, for the choice and the
/// weight: every other expert ranks before a NaN or -inf one, and those fill the slots left, lowest first, with
/// weight 0. A row with no finite logit (all NaN or -inf) still gets experts 0, 1, ..., topk − 1, with sigmoid
/// weights 0 and softmax weights NaN (0/0: the softmax of such a row is undefined, and the NaN keeps the broken token
/// visible downstream).
void launch_moe_route(const void* logits, int* ids, float* weights, std::int64_t tokens, std::int64_t experts,
                      std::int64_t topk, bool sigmoid, cudaStream_t stream);

/// out[t] = Σ_k weights[t·topk + k] · rows[t·topk + k] over n columns (bf16 rows and output).
void launch_moe_unpermute(const void* rows, const float* weights, void* out, std::int64_t tokens, std::int64_t topk,
                          std::int64_t n, cudaStream_t stream);

/// Router weights of given experts: weights[t·topk + k] = softmax of the fp32 logits [tokens × experts] at expert
/// ids[t·topk + k], over the token's `topk` experts when `renormalize` (Qwen3's norm_topk_prob), else over all experts.
void launch_moe_route_fixed(const float* logits, const int* ids, float* weights, std::int64_t tokens,
                            std::int64_t experts, std::int64_t topk, bool renormalize, cudaStream_t stream);

/// out[t] = Σ_s w · rows[row_map[t·slots + s]] over n columns, skipping negative entries; w = weights[t·slots + s], or
/// 1 when `weights` is null (bf16 rows and output, fp32 sum).
void launch_moe_combine(const void* rows, const int* row_map, const float* weights, void* out, std::int64_t tokens,
                        std::int64_t slots, std::int64_t n, cudaStream_t stream);

/// DSA indexer logits: out[i][j] = Σ_h w[i][h] · relu(q[i][h] · k[j]) for key positions visible to query i
/// (j ≤ q_start + i·q_stride when causal; −FLT_MAX otherwise, which launch_topk never selects); q [queries × heads ×
/// dim], k [keys × dim], w [queries × heads], all bf16; out fp32. Runs on the first of the wgmma, mma.sync and
/// reference kernels that takes the arguments (indexer_score.hpp).
void launch_indexer_score(const void* q, const void* k, const void* w, float* out, std::int64_t queries,
                          std::int64_t keys, std::int64_t heads, std::int64_t dim, std::int64_t q_start,
                          std::int64_t q_stride, bool causal, cudaStream_t stream);

/// DSA indexer logits with fp8 operands, as DeepSeek-V3.2 quantises them (SGLang's indexer, DeepGEMM's
/// fp8_mqa_logits): out[i][j] = k_scale[j] · Σ_h w[i][h] · relu(q[i][h] · k[j]) for visible keys (as
/// launch_indexer_score; −FLT_MAX otherwise); q [queries × heads × dim] and k [keys × dim] fp8 e4m3, k_scale [keys]
/// fp32 (one scale per key, ≥ 0), w [queries × heads] fp32 holding the head weights times q's per-(query, head) scale
/// (relu(s·x) = s·relu(x) for s ≥ 0: q's scale folds into w, as SGLang folds it); out fp32. Runs on the Hopper kernel
/// where it takes the arguments, else on the reference kernel (indexer_score.hpp).
void launch_indexer_score_fp8(const void* q, const void* k, const float* k_scale, const float* w, float* out,
                              std::int64_t queries, std::int64_t keys, std::int64_t heads, std::int64_t dim,
                              std::int64_t q_start, std::int64_t q_stride, bool causal, cudaStream_t stream);

/// Which prefix of each top-k row holds its values. q_tokens = 0: all n. Else the rows are the indexer's causal rows,
/// request by request (row r is query r mod q_tokens of its request, at position p = q_start + (r mod
/// q_tokens)·q_stride) and row r holds min(p + 1, n) values; the rest of the row is not read.
struct TopkRowLengths {
  std::int64_t q_tokens = 0;
  std::int64_t q_start = 0;
  std::int64_t q_stride = 1;
};

/// Per row of n fp32 values (row r at in + r·n, its first values as `lengths` says): the indices of the k largest
/// (any order; any of equal values at the k-th), −1 padding when a row has fewer than k values above −FLT_MAX
/// (−FLT_MAX and −inf are never selected).
void launch_topk(const float* in, int* indices, std::int64_t rows, std::int64_t n, std::int64_t k,
                 const TopkRowLengths& lengths, cudaStream_t stream);

}  // namespace paratwin::cuda
