#pragma once
/// What the per-layer builders of one rank need to know: the model, the layout, which tokens the rank holds in the
/// current micro-batch, and the choices (CP algorithm, MoE mode, routing) of the schedule.

#include <cstdint>
#include <string>
#include <vector>

#include "models/builders/op_emitter.hpp"
#include "models/builders/token_split.hpp"
#include "models/model_spec.hpp"
#include "models/schedule_options.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::build {

class ExpertRouting;

/// The tokens one rank processes in one micro-batch. Every request of the rank's attention-DP replica has the same
/// shape (the builder refuses layouts where they would not), so per-request quantities are multiplied by `requests`.
struct RankTokens {
  std::vector<TokenRun> runs;     ///< this rank's query positions within one request
  std::int64_t requests = 1;      ///< requests of the rank's attention-DP replica in this step
  std::int64_t context_end = 0;   ///< keys visible to this micro-batch: positions [0, context_end) of a request
  std::int64_t chunk_tokens = 0;  ///< new tokens of one request in this micro-batch over the whole CP group
  std::int64_t max_local = 0;     ///< largest per-request local token count over the CP group (gather padding)
  bool split_over_cp = true;      ///< prefill splits tokens over CP; decode replicates them on every CP rank

  /// Tokens this rank holds: Σ runs × requests.
  [[nodiscard]] std::int64_t local() const {
    std::int64_t n = 0;
    for (const auto& run : runs) n += run.count;
    return n * requests;
  }
};

struct LayerContext {
  const ModelSpec& model;
  const RankLayout& layout;
  const ScheduleOptions& options;
  MoeMode moe_mode;
  const RankCoords& coords;
  RankTokens tokens;
  const ExpertRouting* routing = nullptr;
  DType activation_dtype = DType::kBf16;

  [[nodiscard]] const ParallelConfig& config() const { return layout.config(); }
  [[nodiscard]] DType weight_dtype() const { return model.weight_dtype; }
};

/// Per-rank attention dimensions under attention TP.
struct AttentionDims {
  std::int64_t heads = 0;     ///< query heads on this rank (heads / attn_tp)
  std::int64_t kv_heads = 0;  ///< KV heads on this rank (replicated once attn_tp exceeds the KV heads; MLA: 1)
  std::int64_t qk_dim = 0, v_dim = 0;
  std::int64_t kv_row_elems = 0;  ///< elements of one token's cached KV on this rank (MLA latent: 576)
};
[[nodiscard]] AttentionDims attention_dims(const LayerContext& ctx);
/// Causal attention of the queries in `run` (of each of the rank's requests) with the rank's heads and head dims `d`;
/// the caller sets the keys (kv_tokens, and kv_start/kv_stride for a block of them).
[[nodiscard]] ComputeShape query_run_attention_shape(const LayerContext& ctx, const TokenRun& run,
                                                     const AttentionDims& d);

/// The residual stream between layer stages. Every stage ends with a residual add and every stage but the model
/// head starts with an RMSNorm of the same rows; SGLang runs the two as one kernel (fused_add_rmsnorm: residual +=
/// update; out = rmsnorm(residual) · w). So a stage hands the next its add still pending: `update` is added to
/// `residual` by the next stage's opening norm (one kAddRmsNorm), or by close_stream where no norm of the same rows
/// follows (the stage's last layer, a gather in between).
struct ResidualStream {
  OpRef residual = kNoOp;  ///< the op whose output is the stream (before `update` is added)
  OpRef update = kNoOp;    ///< the op whose output is still to be added; kNoOp: the stream is whole
  std::int64_t rows = 0;   ///< rows of the pending add
  std::string add_name;    ///< the add's name when it runs alone ("mlp.residual_add")
};
/// A stage's opening norm: its output rows and the op whose output is the whole residual stream.
struct NormedStream {
  OpRef normed = kNoOp;
  OpRef residual = kNoOp;
};
/// Names of a stage's opening norm when alone and when it absorbs the pending add.
struct StageNames {
  std::string norm;   ///< "mlp.norm"
  std::string fused;  ///< "mlp.add_norm"
};
/// The RMSNorm of `rows` × hidden that opens a stage: kAddRmsNorm when `in` has an add pending (of the same rows),
/// else kRmsNorm.
NormedStream open_stage(LayerContext& ctx, RankEmitter& e, const ResidualStream& in, std::int64_t rows,
                        const StageNames& names);
/// Emits `in`'s pending add, if any; returns the op whose output is the whole stream.
OpRef close_stream(LayerContext& ctx, RankEmitter& e, const ResidualStream& in);

// The layer stages. Each takes the residual stream and returns it, its own residual add pending where a norm of the
// same rows follows. Attention builders include the input norm, projections and communication; their residual add is
// left pending for the MLP's norm.
ResidualStream attention_cp_allgather(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
ResidualStream attention_cp_ring(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
ResidualStream attention_cp_ulysses(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
ResidualStream dense_mlp(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
ResidualStream moe_mlp(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
/// The SwiGLU feed-forward of `rows` tokens with `ffn` intermediate columns (this rank's share): the gate/up GEMM
/// (2·ffn columns), the activation, the down GEMM back to the hidden size, named `<prefix>gate_up_proj`,
/// `<prefix>act` and `<prefix>down_proj`; returns the down GEMM. The dense MLP ("mlp.") and the MoE layer's shared
/// experts ("moe.shared_") are this block (dense_mlp.cpp).
OpRef swiglu_ffn(LayerContext& ctx, RankEmitter& e, std::int64_t rows, std::int64_t ffn, const std::string& prefix,
                 OpRef input);

// Shared pieces of attention (attention_tp.cpp).
struct QkvOps {
  OpRef q = kNoOp;         ///< queries ready (projected, normed, roped)
  OpRef kv = kNoOp;        ///< this rank's new KV rows ready (MLA: latent + rope key)
  OpRef q_latent = kNoOp;  ///< MLA: the q_a latent (input of the DSA indexer's query projection)
  OpRef norm = kNoOp;      ///< the layer's input norm (input of the indexer's key projection)
  OpRef residual = kNoOp;  ///< the whole residual stream (the input norm when it absorbed the previous add)
};
/// Input norm and QKV projections on the rank's local tokens.
QkvOps project_qkv(LayerContext& ctx, RankEmitter& e, const ResidualStream& input);
/// MLA: the per-head up-projection of the gathered latent (prefill form) or query absorption (absorbed form);
/// returns the op after which the core attention can run.
OpRef attention_core(LayerContext& ctx, RankEmitter& e, const QkvOps& qkv, OpRef kv_ready, OpRef topk_ready,
                     const std::vector<TokenRun>& runs);
/// DSA lightning indexer: projections, key gather over ATTN_CP, scores and top-k per run. Returns the top-k op.
OpRef dsa_indexer(LayerContext& ctx, RankEmitter& e, const QkvOps& qkv);
/// Output projection and the attention-TP reduction (all-reduce, or reduce-scatter when the MLP wants tokens split
/// over attention TP); the residual add is left pending for the MLP's norm, which covers the same rows.
ResidualStream attention_output(LayerContext& ctx, RankEmitter& e, OpRef attention, OpRef residual);

/// Whether the MLP of `layer` runs on tokens split over attention TP (MoE layers under TP: the attention output is
/// reduce-scattered instead of all-reduced, and gathered back after the MLP).
[[nodiscard]] bool mlp_splits_attn_tp(const LayerContext& ctx, int layer);

}  // namespace paratwin::build
