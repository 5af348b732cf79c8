#include "models/builders/pipeline_stage.hpp"

namespace paratwin::build {
namespace {

std::int64_t hidden_bytes(const LayerContext& ctx, std::int64_t tokens) {
  return static_cast<std::int64_t>(static_cast<double>(tokens * ctx.model.hidden_size) *
                                   dtype_bytes(ctx.activation_dtype));
}

// Same number on the send and its recv: one transfer per (micro-batch, sending rank).
std::int64_t stage_match(int micro_batch, int src_rank, int world) {
  return -(static_cast<std::int64_t>(micro_batch) * world + src_rank) - 1;  // negative: never a ring-CP match
}

}  // namespace

OpRef embed_tokens(LayerContext& ctx, RankEmitter& e) {
  ComputeShape s;
  s.m = ctx.tokens.local();
  s.n = ctx.model.hidden_size;
  return e.compute("embed", ComputeKind::kEmbedding, s, ctx.model.param_dtype, {});
}

OpRef receive_from_previous_stage(LayerContext& ctx, RankEmitter& e) {
  const int tp = ctx.config().tp_size;
  const int prev = e.rank() - tp;
  return e.recv("pp_recv", prev, hidden_bytes(ctx, ctx.tokens.local()), ctx.activation_dtype,
                stage_match(e.micro_batch(), prev, e.layout().world_size()), {});
}

OpRef send_to_next_stage(LayerContext& ctx, RankEmitter& e, OpRef hidden) {
  const int next = e.rank() + ctx.config().tp_size;
  return e.send("pp_send", next, hidden_bytes(ctx, ctx.tokens.local()), ctx.activation_dtype,
                stage_match(e.micro_batch(), e.rank(), e.layout().world_size()), {hidden});
}

OpRef final_logits(LayerContext& ctx, RankEmitter& e, OpRef hidden) {
  const auto& m = ctx.model;
  const auto act = ctx.activation_dtype;
  OpRef ready = hidden;
  const bool prefill = ctx.options.phase == Phase::kPrefill;
  if (prefill && ctx.config().attn_cp_size > 1) {
    // SGLang's last PP rank all-gathers the final hidden states over ATTN_CP and restores token order.
    ready = e.collective("head.hidden_all_gather", CollectiveKind::kAllGather, GroupFamily::kAttnCp,
                         hidden_bytes(ctx, ctx.tokens.max_local * ctx.tokens.requests), act, {hidden});
  }
  // Prefill needs the logits of each request's last token only; decode of every new token.
  const std::int64_t rows = ctx.tokens.requests;
  ComputeShape norm;
  norm.m = rows;
  norm.n = m.hidden_size;
  const auto normed = e.compute("head.final_norm", ComputeKind::kRmsNorm, norm, act, {ready});
  const int attn_tp = ctx.config().attn_tp_size();
  ComputeShape logits;
  logits.m = rows;
  logits.n = (m.vocab_size + attn_tp - 1) / attn_tp;  // vocab-parallel over attention TP
  logits.k = m.hidden_size;
  OpRef out = e.compute("head.lm_head", ComputeKind::kGemm, logits, m.param_dtype, {normed});
  if (attn_tp > 1) {
    out = e.collective("head.logits_all_gather", CollectiveKind::kAllGather, GroupFamily::kAttnTp,
                       static_cast<std::int64_t>(static_cast<double>(rows * logits.n) * dtype_bytes(DType::kFp32)),
                       DType::kFp32, {out});
  }
  return out;
}

}  // namespace paratwin::build
