// SGLang's prefill context parallelism as merged (PR #17213, sglang-parallel-state.md §4): every CP rank computes
// the KV of its own tokens, all-gathers the latent KV (and the DSA indexer keys) over ATTN_CP, re-orders it to
// token order, and runs its local queries against the whole causal prefix.
#include "models/builders/layer_context.hpp"

namespace paratwin::build {

ResidualStream attention_cp_allgather(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto qkv = project_qkv(ctx, e, input);
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  OpRef kv_ready = qkv.kv;
  if (ctx.config().attn_cp_size > 1 && ctx.tokens.split_over_cp) {
    // SGLang pads every shard to the largest one before the all-gather, then trims and re-orders.
    const auto bytes = static_cast<std::int64_t>(
        static_cast<double>(ctx.tokens.max_local * ctx.tokens.requests * d.kv_row_elems) * dtype_bytes(act));
    const auto gathered =
        e.collective("attn.kv_all_gather", CollectiveKind::kAllGather, GroupFamily::kAttnCp, bytes, act, {qkv.kv});
    ComputeShape reorder;
    reorder.m = ctx.tokens.chunk_tokens * ctx.tokens.requests;
    reorder.n = d.kv_row_elems;
    kv_ready = e.compute("attn.kv_reorder", ComputeKind::kKvReorder, reorder, act, {gathered});
  }
  const OpRef topk = ctx.model.indexer ? dsa_indexer(ctx, e, qkv) : kNoOp;
  const auto attention = attention_core(ctx, e, qkv, kv_ready, topk, ctx.tokens.runs);
  return attention_output(ctx, e, attention, qkv.residual);
}

}  // namespace paratwin::build
