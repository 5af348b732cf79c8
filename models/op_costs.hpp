#pragma once
/// Costs of compute ops (FLOPs and minimum HBM bytes) and model-level counts (parameters, linear FLOPs per token).
///
/// FLOPs count a multiply-add as 2. Bytes are the minimum HBM traffic of one kernel: every input read once and
/// every output written once; weights count once per op; KV caches count the keys at least one query can see. The
/// per-kind formulas are in docs/models.md and next to ComputeKind in models/schedule.hpp.

#include <cstdint>

#include "models/model_spec.hpp"
#include "models/schedule.hpp"

namespace paratwin {

/// Sets op.flops and op.bytes from op.kind, op.shape and op.dtype. Throws paratwin::InternalError (PARATWIN_ASSERT)
/// on a shape that breaks the kind's contract (negative sizes, Σ group_rows ≠ m, ...): shapes come from builders.
void fill_cost(ComputeOp& op);

/// Returns `op` with its cost filled (convenience for builders and tests).
[[nodiscard]] ComputeOp with_cost(ComputeOp op);

/// Unmasked (query, key) pairs of causal attention: queries at absolute positions [q_start, q_start + q_tokens),
/// keys [0, kv_tokens); the query at position p sees keys 0..p, clipped to kv_tokens. Exact, O(1).
[[nodiscard]] std::int64_t causal_pairs(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens);

/// Pairs of DSA sparse attention: each query at position p attends min(topk, p + 1, kv_tokens) keys (causal), or
/// min(topk, kv_tokens) keys when not causal.
[[nodiscard]] std::int64_t sparse_pairs(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens,
                                        std::int64_t topk, bool causal = true);

/// Unmasked (query, key) pairs of one request of an attention-like shape: queries at q_start + i·q_stride, keys at
/// kv_start + j·kv_stride; causal: a query at position p sees the keys at positions ≤ p. Exact, O(log) (a floor
/// sum), for any strides. (shape.batch is not applied.)
[[nodiscard]] std::int64_t attention_pairs(const ComputeShape& shape);

/// As attention_pairs, each query capped at shape.topk keys (DSA sparse attention).
[[nodiscard]] std::int64_t sparse_attention_pairs(const ComputeShape& shape);

/// Bytes of one cached key row of MLA (the shared latent, K = [latent | rope], V = latent): `latent_dim` elements of
/// which the first `v_dim` are the latent. BF16: latent_dim × 2 (1,152 B for V3); FP8 (FlashMLA's sparse layout):
/// v_dim fp8 + one fp32 scale per 128 latent elements + the rope tail in bf16 (656 B for V3); FP32: × 4.
[[nodiscard]] std::int64_t mla_latent_row_bytes(std::int64_t latent_dim, std::int64_t v_dim, DType dtype);

/// Parameter counts of a model (MTP / next-n layers excluded).
struct ParameterCounts {
  std::int64_t total = 0;  ///< every parameter (scales of FP8 checkpoints excluded)
  /// Parameters one token touches, counted as model cards do: everything except the routed experts, plus
  /// experts_per_token of them in each MoE layer (the embedding table and lm_head included).
  std::int64_t activated = 0;
  /// Linear-layer weights one token multiplies through: activated minus the embedding, norms, biases and the
  /// router's correction bias (lm_head and router gates included).
  std::int64_t activated_linear = 0;
  std::int64_t embedding = 0;       ///< input embedding table
  std::int64_t lm_head = 0;         ///< 0 when tied
  std::int64_t attention = 0;       ///< all layers' attention projections (and biases)
  std::int64_t indexer = 0;         ///< all layers' DSA indexer projections
  std::int64_t dense_mlp = 0;       ///< all dense FFN layers
  std::int64_t router = 0;          ///< MoE gates and correction biases
  std::int64_t shared_experts = 0;  ///< all shared experts
  std::int64_t routed_experts = 0;  ///< all routed experts
  std::int64_t norms = 0;           ///< RMSNorm / LayerNorm parameters
};

/// Counts the parameters of `model` from its weight inventory (models/model_spec.hpp).
[[nodiscard]] ParameterCounts count_parameters(const ModelSpec& model);

/// FLOPs of the linear layers for one token: 2 × activated_linear (attention projections in their non-absorbed
/// form, indexer projections, FFN/experts, router gates, lm_head). Attention scores and softmax are excluded:
/// they depend on the context length (see kAttention).
[[nodiscard]] double linear_flops_per_token(const ModelSpec& model);

}  // namespace paratwin
