// Attention pieces shared by every CP algorithm: projections under attention TP, the MLA forms, the DSA indexer,
// and the output projection with its attention-TP reduction.
#include <algorithm>

#include "models/builders/gemm_shapes.hpp"
#include "models/builders/layer_context.hpp"
#include "models/builders/moe_routing.hpp"
#include "topology/error.hpp"

namespace paratwin::build {
namespace {

std::int64_t bytes_of(std::int64_t elems, DType dtype) {
  return static_cast<std::int64_t>(static_cast<double>(elems) * dtype_bytes(dtype));
}

// Attention of queries in `run` (of each request) against keys [0, context_end).
ComputeShape attention_shape(const LayerContext& ctx, const TokenRun& run, const AttentionDims& d) {
  ComputeShape s = query_run_attention_shape(ctx, run, d);
  s.kv_tokens = ctx.tokens.context_end;
  // The absorbed MLA form attends over one shared latent row per key (K = the row, V = its first kv_lora dims).
  s.kv_shared = ctx.model.mla.has_value() && d.kv_heads == 1 && d.qk_dim == ctx.model.mla->latent_dim();
  return s;
}

bool uses_absorbed_mla(const LayerContext& ctx) {
  // DSA (V3.2) runs sparse MLA in the absorbed (MQA over the latent) form at prefill too; dense MLA prefill
  // expands the latent per head (the "MHA" form); decode always absorbs.
  return ctx.model.indexer.has_value() || ctx.options.phase == Phase::kDecode;
}

}  // namespace

ComputeShape query_run_attention_shape(const LayerContext& ctx, const TokenRun& run, const AttentionDims& d) {
  return {.group_rows = {},  // named only because GCC warns of a member without a default that goes unnamed
          .q_tokens = run.count,
          .q_start = run.start,
          .q_stride = run.stride,
          .batch = ctx.tokens.requests,
          .heads = d.heads,
          .kv_heads = d.kv_heads,
          .head_dim_qk = d.qk_dim,
          .head_dim_v = d.v_dim,
          .causal = true};
}

AttentionDims attention_dims(const LayerContext& ctx) {
  const auto& m = ctx.model;
  const int attn_tp = ctx.config().attn_tp_size();
  AttentionDims d;
  d.heads = m.num_attention_heads / attn_tp;
  if (m.mla) {
    const bool absorbed = uses_absorbed_mla(ctx);
    d.kv_heads = absorbed ? 1 : d.heads;
    d.qk_dim = absorbed ? m.mla->latent_dim() : m.mla->qk_head_dim();
    d.v_dim = absorbed ? m.mla->kv_lora_rank : m.mla->v_head_dim;
    d.kv_row_elems = m.mla->latent_dim();
  } else {
    d.kv_heads = std::max<std::int64_t>(1, m.num_kv_heads / attn_tp);
    d.qk_dim = m.head_dim;
    d.v_dim = m.head_dim;
    d.kv_row_elems = 2 * d.kv_heads * m.head_dim;
  }
  return d;
}

QkvOps project_qkv(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& m = ctx.model;
  const auto n = ctx.tokens.local();
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  QkvOps out;
  const auto opened = open_stage(ctx, e, input, n, {"attn.input_norm", "attn.add_norm"});
  out.norm = opened.normed;
  out.residual = opened.residual;
  ComputeShape rope;
  rope.m = n;
  if (m.mla) {
    const auto& mla = *m.mla;
    // q_a_proj and kv_a_proj_with_mqa are replicated linears, fused in SGLang.
    const auto qkv_a =
        e.compute("attn.qkv_a_proj", ComputeKind::kGemm,
                  gemm_shape(n, mla.q_lora_rank + mla.latent_dim(), m.hidden_size), ctx.weight_dtype(), {out.norm});
    ComputeShape a_norm;
    a_norm.m = n;
    a_norm.n = mla.q_lora_rank + mla.kv_lora_rank;
    out.q_latent = e.compute("attn.qkv_a_norm", ComputeKind::kRmsNorm, a_norm, act, {qkv_a});
    const auto q_b =
        e.compute("attn.q_b_proj", ComputeKind::kGemm, gemm_shape(n, d.heads * mla.qk_head_dim(), mla.q_lora_rank),
                  ctx.weight_dtype(), {out.q_latent});
    rope.heads = d.heads + 1;  // every query head's rope part and the one shared rope key
    rope.head_dim_qk = mla.qk_rope_head_dim;
    const auto roped = e.compute("attn.rope", ComputeKind::kRope, rope, act, {q_b});
    out.kv = roped;
    out.q = roped;
    if (uses_absorbed_mla(ctx)) {
      // Absorb W_UK into the queries: per head [n × qk_nope] · [qk_nope × kv_lora].
      out.q = e.compute("attn.q_absorb", ComputeKind::kGroupedGemm,
                        grouped_gemm_shape(d.heads, n, mla.kv_lora_rank, mla.qk_nope_head_dim), act, {roped});
    }
    return out;
  }
  const auto qkv =
      e.compute("attn.qkv_proj", ComputeKind::kGemm,
                gemm_shape(n, (d.heads + 2 * d.kv_heads) * m.head_dim, m.hidden_size), ctx.weight_dtype(), {out.norm});
  OpRef before_rope = qkv;
  if (m.qk_norm) {
    ComputeShape qk_norm;
    qk_norm.m = n * (d.heads + d.kv_heads);
    qk_norm.n = m.head_dim;
    before_rope = e.compute("attn.qk_norm", ComputeKind::kRmsNorm, qk_norm, act, {qkv});
  }
  rope.heads = d.heads + d.kv_heads;
  rope.head_dim_qk = m.head_dim;
  out.q = e.compute("attn.rope", ComputeKind::kRope, rope, act, {before_rope});
  out.kv = out.q;
  return out;
}

OpRef attention_core(LayerContext& ctx, RankEmitter& e, const QkvOps& qkv, OpRef kv_ready, OpRef topk_ready,
                     const std::vector<TokenRun>& runs) {
  const auto& m = ctx.model;
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  OpRef ready = kv_ready;
  if (m.mla && !uses_absorbed_mla(ctx)) {
    // Prefill form: expand the latent of every visible key to per-head K_nope and V (kv_b_proj). Under all-gather
    // CP every CP rank expands the whole gathered context: work CP adds on purpose.
    const auto& mla = *m.mla;
    ComputeShape up;
    up.m = ctx.tokens.context_end * ctx.tokens.requests;
    up.n = d.heads * (mla.qk_nope_head_dim + mla.v_head_dim);
    up.k = mla.kv_lora_rank;
    ready = e.compute("attn.kv_b_proj", ComputeKind::kGemm, up, ctx.weight_dtype(), {kv_ready, qkv.q});
  }
  std::vector<OpRef> outputs;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].count == 0) continue;
    const auto suffix = runs.size() > 1 ? std::to_string(i) : std::string();
    auto shape = attention_shape(ctx, runs[i], d);
    if (m.indexer) {
      shape.topk = m.indexer->topk;
      outputs.push_back(e.compute("attn.sparse_attention" + suffix, ComputeKind::kSparseAttention, shape, act,
                                  {ready, qkv.q, topk_ready}));
    } else {
      outputs.push_back(e.compute("attn.attention" + suffix, ComputeKind::kAttention, shape, act, {ready, qkv.q}));
    }
  }
  PARATWIN_ASSERT(!outputs.empty(), "rank {} has no query tokens", e.rank());
  if (m.mla && uses_absorbed_mla(ctx)) {
    // Un-absorb: per head [n × kv_lora] · [kv_lora × v_head_dim] (W_UV).
    const auto& mla = *m.mla;
    const auto n = ctx.tokens.local();
    return e.compute("attn.v_unabsorb", ComputeKind::kGroupedGemm,
                     grouped_gemm_shape(d.heads, n, mla.v_head_dim, mla.kv_lora_rank), act, outputs);
  }
  return outputs.size() == 1 ? outputs.front() : outputs.back();
}

OpRef dsa_indexer(LayerContext& ctx, RankEmitter& e, const QkvOps& qkv) {
  const auto& m = ctx.model;
  const auto& idx = *m.indexer;
  const auto& mla = *m.mla;
  const auto n = ctx.tokens.local();
  const auto act = ctx.activation_dtype;
  const auto q = e.compute("idx.wq_b", ComputeKind::kGemm, gemm_shape(n, idx.heads * idx.head_dim, mla.q_lora_rank),
                           ctx.weight_dtype(), {qkv.q_latent});
  const auto k = e.compute("idx.wk", ComputeKind::kGemm, gemm_shape(n, idx.head_dim, m.hidden_size), ctx.weight_dtype(),
                           {qkv.norm});
  ComputeShape k_norm;
  k_norm.m = n;
  k_norm.n = idx.head_dim;
  const auto k_normed = e.compute("idx.k_norm", ComputeKind::kRmsNorm, k_norm, act, {k});
  const auto w = e.compute("idx.weights_proj", ComputeKind::kGemm, gemm_shape(n, idx.heads, m.hidden_size),
                           m.param_dtype, {qkv.norm});
  ComputeShape rope;
  rope.m = n;
  rope.heads = idx.heads + 1;
  rope.head_dim_qk = mla.qk_rope_head_dim;
  const auto roped = e.compute("idx.rope", ComputeKind::kRope, rope, act, {q, k_normed});
  OpRef keys_ready = roped;
  const int cp = ctx.config().attn_cp_size;
  if (cp > 1 && ctx.tokens.split_over_cp) {
    // Indexer keys: fp8 head_dim plus one fp32 scale per token, gathered over ATTN_CP like the latent KV.
    const std::int64_t row_bytes = idx.head_dim + 4;
    const auto gathered = e.collective("idx.key_all_gather", CollectiveKind::kAllGather, GroupFamily::kAttnCp,
                                       ctx.tokens.max_local * ctx.tokens.requests * row_bytes, DType::kFp8, {roped});
    ComputeShape reorder;
    reorder.m = ctx.tokens.chunk_tokens * ctx.tokens.requests;
    reorder.n = row_bytes;
    keys_ready = e.compute("idx.key_reorder", ComputeKind::kKvReorder, reorder, DType::kFp8, {gathered});
  }
  OpRef last = kNoOp;
  const auto& runs = ctx.tokens.runs;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].count == 0) continue;
    const auto suffix = runs.size() > 1 ? std::to_string(i) : std::string();
    ComputeShape score;
    score.q_tokens = runs[i].count;
    score.q_start = runs[i].start;
    score.q_stride = runs[i].stride;
    score.kv_tokens = ctx.tokens.context_end;
    score.heads = idx.heads;
    score.head_dim_qk = idx.head_dim;
    score.causal = true;
    score.batch = ctx.tokens.requests;
    const auto scores =
        e.compute("idx.score" + suffix, ComputeKind::kIndexerScore, score, DType::kFp8, {keys_ready, w, roped});
    // One row of logits per query, holding its causal prefix.
    auto topk = score;
    topk.m = runs[i].count * ctx.tokens.requests;
    topk.n = ctx.tokens.context_end;
    topk.topk = idx.topk;
    last = e.compute("idx.topk" + suffix, ComputeKind::kTopK, topk, DType::kFp32, {scores});
  }
  return last;
}

bool mlp_splits_attn_tp(const LayerContext& ctx, int layer) {
  return ctx.config().attn_tp_size() > 1 && ctx.model.is_moe_layer(layer);
}

ResidualStream attention_output(LayerContext& ctx, RankEmitter& e, OpRef attention, OpRef residual) {
  const auto& m = ctx.model;
  const auto n = ctx.tokens.local();
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  const std::int64_t head_out = m.mla ? m.mla->v_head_dim : m.head_dim;
  const auto o = e.compute("attn.o_proj", ComputeKind::kGemm, gemm_shape(n, m.hidden_size, d.heads * head_out),
                           ctx.weight_dtype(), {attention});
  OpRef reduced = o;
  const int attn_tp = ctx.config().attn_tp_size();
  std::int64_t rows = n;
  if (attn_tp > 1) {
    if (mlp_splits_attn_tp(ctx, e.layer())) {
      // The MoE runs on tokens split over attention TP: reduce-scatter instead of all-reduce.
      rows = (n + attn_tp - 1) / attn_tp;  // SGLang pads tokens to a multiple of attn_tp
      reduced = e.collective("attn.o_reduce_scatter", CollectiveKind::kReduceScatter, GroupFamily::kAttnTp,
                             bytes_of(rows * m.hidden_size, act), act, {o});
    } else {
      reduced = e.collective("attn.o_all_reduce", CollectiveKind::kAllReduce, GroupFamily::kAttnTp,
                             bytes_of(n * m.hidden_size, act), act, {o});
    }
  }
  return {residual, reduced, rows, "attn.residual_add"};
}

}  // namespace paratwin::build
