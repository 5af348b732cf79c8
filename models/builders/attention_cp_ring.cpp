// Ring pass-KV context parallelism (Ring Attention; Transformer Engine's "p2p"; Meta's pass-KV), for comparison
// with SGLang's all-gather CP on the same model: KV blocks travel around the ATTN_CP ring, one hop per step, and
// each step's attention on the block in hand overlaps the transfer of the next block.
#include <fmt/format.h>

#include "models/builders/layer_context.hpp"
#include "topology/error.hpp"

namespace paratwin::build {
namespace {

// Match number of the KV block that `src` sends at `step` of (layer, micro-batch): equal on both ends.
std::int64_t block_match(int layer, int micro_batch, int step, int src, int world) {
  return ((static_cast<std::int64_t>(layer + 1) * 64 + micro_batch) * 4096 + step) * world + src;
}

}  // namespace

ResidualStream attention_cp_ring(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& c = ctx.config();
  const int cp = c.attn_cp_size;
  const int me = ctx.coords.attn_cp_rank;
  const auto& group = e.layout().group_of(GroupFamily::kAttnCp, e.rank()).ranks;
  const auto d = attention_dims(ctx);
  const auto act = ctx.activation_dtype;
  const auto& m = ctx.model;
  const auto qkv = project_qkv(ctx, e, input);

  ComputeShape merge;
  merge.m = ctx.tokens.local();
  merge.n = d.heads * d.v_dim;
  std::vector<OpRef> step_outputs;
  OpRef block_in_hand = qkv.kv;  // the KV block this rank holds at the current step
  for (int step = 0; step < cp; ++step) {
    const int owner = ((me - step) % cp + cp) % cp;  // CP rank whose tokens the block holds
    auto owner_runs = split_tokens(ctx.options.cp_split, ctx.tokens.chunk_tokens, cp, owner);
    for (auto& run : owner_runs) run.start += ctx.tokens.context_end - ctx.tokens.chunk_tokens;
    std::int64_t owner_rows = 0;
    for (const auto& r : owner_runs) owner_rows += r.count;
    owner_rows *= ctx.tokens.requests;
    // Pass the block on (except at the last step) while computing on it.
    OpRef next_block = kNoOp;
    if (step + 1 < cp) {
      const int next = group[static_cast<std::size_t>((me + 1) % cp)];
      const int prev = group[static_cast<std::size_t>((me - 1 + cp) % cp)];
      const auto bytes = static_cast<std::int64_t>(static_cast<double>(owner_rows * d.kv_row_elems) * dtype_bytes(act));
      const auto prev_owner = ((me - step - 1) % cp + cp) % cp;
      const auto prev_rows = [&] {
        std::int64_t rows = 0;
        for (const auto& r : split_tokens(ctx.options.cp_split, ctx.tokens.chunk_tokens, cp, prev_owner))
          rows += r.count;
        return rows * ctx.tokens.requests;
      }();
      const auto recv_bytes =
          static_cast<std::int64_t>(static_cast<double>(prev_rows * d.kv_row_elems) * dtype_bytes(act));
      // The send and the recv of a step are one NCCL group: posted alone, every rank would wait on its neighbour.
      const auto send_match = block_match(e.layer(), e.micro_batch(), step, e.rank(), e.layout().world_size());
      e.send(fmt::format("attn.ring_send{}", step), next, bytes, act, send_match, {block_in_hand}, send_match);
      next_block = e.recv(fmt::format("attn.ring_recv{}", step), prev, recv_bytes, act,
                          block_match(e.layer(), e.micro_batch(), step, prev, e.layout().world_size()), {}, send_match);
    }
    OpRef kv_ready = block_in_hand;
    if (m.mla) {
      // Prefill form: expand the block's latents per head.
      ComputeShape up;
      up.m = owner_rows;
      up.n = d.heads * (m.mla->qk_nope_head_dim + m.mla->v_head_dim);
      up.k = m.mla->kv_lora_rank;
      kv_ready = e.compute(fmt::format("attn.kv_b_proj{}", step), ComputeKind::kGemm, up, ctx.weight_dtype(),
                           {block_in_hand, qkv.q});
    }
    std::vector<OpRef> attended;
    for (std::size_t qi = 0; qi < ctx.tokens.runs.size(); ++qi) {
      const auto& q = ctx.tokens.runs[qi];
      for (std::size_t ki = 0; ki < owner_runs.size(); ++ki) {
        const auto& k = owner_runs[ki];
        if (q.count == 0 || k.count == 0 || k.start > q.last()) continue;  // the whole block is in the future
        ComputeShape s = query_run_attention_shape(ctx, q, d);
        s.kv_tokens = k.count;
        s.kv_start = k.start;
        s.kv_stride = k.stride;
        attended.push_back(e.compute(fmt::format("attn.ring_attention{}.{}{}", step, qi, ki), ComputeKind::kAttention,
                                     s, act, {kv_ready, qkv.q}));
      }
    }
    if (!attended.empty()) {
      // Online-softmax merge of this step's partial output into the running one.
      attended.insert(attended.end(), step_outputs.begin(), step_outputs.end());
      step_outputs = {
          e.compute(fmt::format("attn.ring_merge{}", step), ComputeKind::kResidualAdd, merge, DType::kFp32, attended)};
    }
    if (next_block != kNoOp) block_in_hand = next_block;
  }
  PARATWIN_ASSERT(!step_outputs.empty(), "rank {} attended to nothing", e.rank());
  return attention_output(ctx, e, step_outputs.back(), qkv.residual);
}

}  // namespace paratwin::build
