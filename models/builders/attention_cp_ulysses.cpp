// Ulysses context parallelism (DeepSpeed-Ulysses; Transformer Engine's "a2a"), for comparison on the same model:
// an all-to-all over ATTN_CP turns sequence-split Q/K/V into head-split Q/K/V over the whole sequence, attention runs
// on all tokens for heads/cp heads, and a second all-to-all returns the output to the sequence split.
#include "models/builders/layer_context.hpp"

namespace paratwin::build {

ResidualStream attention_cp_ulysses(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& c = ctx.config();
  const auto& m = ctx.model;
  const int cp = c.attn_cp_size;
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  const auto qkv = project_qkv(ctx, e, input);
  const auto n = ctx.tokens.local();
  OpRef local_kv = qkv.kv;
  std::int64_t kv_heads = d.kv_heads;
  if (m.mla) {
    // Ulysses moves per-head K and V: expand this rank's latents first (prefill form).
    ComputeShape up;
    up.m = n;
    up.n = d.heads * (m.mla->qk_nope_head_dim + m.mla->v_head_dim);
    up.k = m.mla->kv_lora_rank;
    local_kv = e.compute("attn.kv_b_proj", ComputeKind::kGemm, up, ctx.weight_dtype(), {qkv.kv, qkv.q});
    kv_heads = d.heads;
  }
  const std::int64_t heads_per_rank = d.heads / cp;
  const std::int64_t kv_heads_per_rank = std::max<std::int64_t>(1, kv_heads / cp);
  // Elements per token that each peer receives: its heads' q, k and v.
  const std::int64_t elems_per_token = heads_per_rank * d.qk_dim + kv_heads_per_rank * (d.qk_dim + d.v_dim);
  const std::int64_t out_elems_per_token = heads_per_rank * d.v_dim;
  const double elem_bytes = dtype_bytes(act);
  std::vector<std::int64_t> peer_tokens;
  for (int j = 0; j < cp; ++j) {
    peer_tokens.push_back(local_tokens(ctx.options.cp_split, ctx.tokens.chunk_tokens, cp, j) * ctx.tokens.requests);
  }
  const auto bytes = [&](std::int64_t tokens, std::int64_t elems) {
    return static_cast<std::int64_t>(static_cast<double>(tokens * elems) * elem_bytes);
  };
  std::vector<std::int64_t> send_in, recv_in, send_out, recv_out;
  for (int j = 0; j < cp; ++j) {
    send_in.push_back(bytes(n, elems_per_token));
    recv_in.push_back(bytes(peer_tokens[static_cast<std::size_t>(j)], elems_per_token));
    send_out.push_back(bytes(peer_tokens[static_cast<std::size_t>(j)], out_elems_per_token));
    recv_out.push_back(bytes(n, out_elems_per_token));
  }
  std::int64_t total_in = 0;
  for (const auto b : send_in) total_in += b;
  const auto to_heads = e.collective("attn.ulysses_qkv_all_to_all", CollectiveKind::kAllToAll, GroupFamily::kAttnCp,
                                     total_in, act, {qkv.q, local_kv}, send_in, recv_in);
  // All of this micro-batch's tokens, heads/cp heads, against the causal prefix.
  ComputeShape s;
  s.q_tokens = ctx.tokens.chunk_tokens;
  s.q_start = ctx.tokens.context_end - ctx.tokens.chunk_tokens;
  s.kv_tokens = ctx.tokens.context_end;
  s.heads = heads_per_rank;
  s.kv_heads = kv_heads_per_rank;
  s.head_dim_qk = d.qk_dim;
  s.head_dim_v = d.v_dim;
  s.causal = true;
  s.batch = ctx.tokens.requests;
  const auto attention = e.compute("attn.attention", ComputeKind::kAttention, s, act, {to_heads});
  std::int64_t total_out = 0;
  for (const auto b : send_out) total_out += b;
  const auto to_sequence = e.collective("attn.ulysses_out_all_to_all", CollectiveKind::kAllToAll, GroupFamily::kAttnCp,
                                        total_out, act, {attention}, send_out, recv_out);
  return attention_output(ctx, e, to_sequence, qkv.residual);
}

}  // namespace paratwin::build
