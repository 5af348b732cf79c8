// MoE feed-forward under CP/EP, in SGLang's two modes (sglang-parallel-state.md §4 step 6):
//  - all-to-all (DeepEP): tokens stay split; dispatch over MOE_EP to the ranks owning the chosen experts (one copy
//    per token and destination rank, fp8 with block scales when the weights are fp8), grouped expert GEMMs, combine
//    back in bf16 and sum each token's returned rows; shared experts run on the local tokens meanwhile.
//  - gather (fused MoE, TP-sharded experts): all-gather the tokens over ATTN_CP (the TP group when attention DP or
//    attention TP also splits them), every expert's TP shard on all tokens, reduce-scatter back (which also does the
//    TP reduction).
#include <algorithm>

#include "models/builders/layer_context.hpp"
#include "models/builders/moe_routing.hpp"
#include "topology/error.hpp"

namespace paratwin::build {
namespace {

std::int64_t bytes_of(std::int64_t elems, DType dtype) {
  return static_cast<std::int64_t>(static_cast<double>(elems) * dtype_bytes(dtype));
}

// Bytes of one token's hidden state as DeepEP dispatches it: fp8 plus one fp32 scale per 128 values, or bf16.
std::int64_t dispatch_row_bytes(const ModelSpec& m) {
  if (m.weight_dtype == DType::kFp8) return m.hidden_size + (m.hidden_size + 127) / 128 * 4;
  return 2 * m.hidden_size;
}

// Router, permutation, the two grouped GEMMs with the activation, and the weighted un-permutation, on `rows`
// (token, expert) rows of `tokens` tokens spread over local experts as `group_rows`.
OpRef run_experts(LayerContext& ctx, RankEmitter& e, std::int64_t tokens, const std::vector<std::int64_t>& group_rows,
                  OpRef ready) {
  const auto& m = ctx.model;
  const auto& moe = *m.moe;
  const auto act = ctx.activation_dtype;
  const auto ffn = moe.expert_intermediate_size / ctx.config().moe_tp_size();
  std::int64_t rows = 0;
  for (const auto r : group_rows) rows += r;
  OpRef permuted = ready;
  if (ctx.moe_mode == MoeMode::kAllToAll) {
    // DeepEP's received rows are laid out per source rank: gather them into expert order. The fused (gather-mode)
    // kernel instead reads token rows through sorted indices, with no copy.
    ComputeShape permute;
    permute.m = rows;
    permute.n = m.hidden_size;
    permute.topk = std::max<std::int64_t>(1, rows / std::max<std::int64_t>(1, tokens));
    permuted = e.compute("moe.permute", ComputeKind::kMoePermute, permute, act, {ready});
  }
  ComputeShape gate_up;
  gate_up.group_rows = group_rows;
  gate_up.m = rows;
  gate_up.n = 2 * ffn;
  gate_up.k = m.hidden_size;
  const auto up = e.compute("moe.gate_up_gemm", ComputeKind::kGroupedGemm, gate_up, ctx.weight_dtype(), {permuted});
  ComputeShape swiglu;
  swiglu.m = rows;
  swiglu.n = ffn;
  const auto activated = e.compute("moe.act", ComputeKind::kActivation, swiglu, act, {up});
  ComputeShape down;
  down.group_rows = group_rows;
  down.m = rows;
  down.n = m.hidden_size;
  down.k = ffn;
  const auto down_op = e.compute("moe.down_gemm", ComputeKind::kGroupedGemm, down, ctx.weight_dtype(), {activated});
  ComputeShape unpermute;
  unpermute.m = rows;
  unpermute.n = m.hidden_size;
  if (ctx.moe_mode == MoeMode::kAllToAll) {
    unpermute.out_rows = tokens;  // a received token has a row per local expert it chose: 1 to topk
  } else {
    unpermute.topk = std::max<std::int64_t>(1, rows / std::max<std::int64_t>(1, tokens));  // topk per gathered row
  }
  return e.compute("moe.unpermute", ComputeKind::kMoeUnpermute, unpermute, act, {down_op});
}

OpRef shared_experts(LayerContext& ctx, RankEmitter& e, std::int64_t tokens, OpRef normed) {
  const auto& moe = *ctx.model.moe;
  if (moe.num_shared_experts == 0) return kNoOp;
  const auto ffn = moe.num_shared_experts * moe.expert_intermediate_size / ctx.config().moe_tp_size();
  return swiglu_ffn(ctx, e, tokens, ffn, "moe.shared_", normed);
}

OpRef route(LayerContext& ctx, RankEmitter& e, std::int64_t tokens, OpRef normed) {
  const auto& m = ctx.model;
  ComputeShape gate;
  gate.m = tokens;
  gate.n = m.moe->num_experts;
  gate.k = m.hidden_size;
  const auto logits = e.compute("moe.gate", ComputeKind::kGemm, gate, m.param_dtype, {normed});
  ComputeShape choose;
  choose.m = tokens;
  choose.n = m.moe->num_experts;
  choose.topk = m.moe->experts_per_token;
  return e.compute("moe.route", ComputeKind::kMoeRoute, choose, DType::kFp32, {logits});
}

// The family whose ranks hold distinct tokens of one attention-DP replica... or of the whole stage under DP-attention.
GroupFamily gather_family(const ParallelConfig& c) {
  return c.attn_dp_size() == 1 && c.attn_tp_size() == 1 ? GroupFamily::kAttnCp : GroupFamily::kTp;
}

}  // namespace

ResidualStream moe_mlp(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& m = ctx.model;
  const auto& c = ctx.config();
  const auto act = ctx.activation_dtype;
  const bool split_tp = mlp_splits_attn_tp(ctx, e.layer());
  const int attn_tp = c.attn_tp_size();
  const auto n_local = ctx.tokens.local();
  const auto n = split_tp ? (n_local + attn_tp - 1) / attn_tp : n_local;
  ComputeShape norm;
  norm.m = n;
  norm.n = m.hidden_size;
  const auto [normed, residual] = open_stage(ctx, e, input, n, {"moe.norm", "moe.add_norm"});
  PARATWIN_ASSERT(ctx.routing != nullptr, "MoE layer {} without routing", e.layer());

  OpRef mlp_out = kNoOp;
  if (ctx.moe_mode == MoeMode::kAllToAll) {
    const auto& plan = ctx.routing->plan(e.layer());
    const auto me = static_cast<std::size_t>(ctx.coords.moe_ep_rank);
    const auto members = plan.send_rows.size();
    const auto row_bytes = dispatch_row_bytes(m);
    const auto combine_row_bytes = 2 * m.hidden_size;
    std::vector<std::int64_t> send_d, recv_d, send_c, recv_c;
    std::int64_t total_d = 0, total_c = 0, received_tokens = 0, returned_rows = 0;
    for (std::size_t j = 0; j < members; ++j) {
      send_d.push_back(plan.send_rows[me][j] * row_bytes);
      recv_d.push_back(plan.send_rows[j][me] * row_bytes);
      send_c.push_back(plan.send_rows[j][me] * combine_row_bytes);  // results go back where tokens came from
      recv_c.push_back(plan.send_rows[me][j] * combine_row_bytes);
      total_d += send_d.back();
      total_c += send_c.back();
      received_tokens += plan.send_rows[j][me];
      returned_rows += plan.send_rows[me][j];
    }
    const auto routed = route(ctx, e, n, normed);
    const auto dispatch_dtype = m.weight_dtype == DType::kFp8 ? DType::kFp8 : act;
    const auto dispatched = e.collective("moe.dispatch_all_to_all", CollectiveKind::kAllToAll, GroupFamily::kMoeEp,
                                         total_d, dispatch_dtype, {routed}, send_d, recv_d);
    const auto shared = shared_experts(ctx, e, n, normed);  // overlaps the dispatch on the compute stream
    OpRef experts = run_experts(ctx, e, received_tokens, plan.expert_rows[me], dispatched);
    if (c.moe_tp_size() > 1) {
      experts = e.collective("moe.tp_all_reduce", CollectiveKind::kAllReduce, GroupFamily::kMoeTp,
                             bytes_of(received_tokens * m.hidden_size, act), act, {experts});
    }
    const auto returned = e.collective("moe.combine_all_to_all", CollectiveKind::kAllToAll, GroupFamily::kMoeEp,
                                       total_c, act, {experts}, send_c, recv_c);
    // Each token's sum of the rows sent back to it, one per rank that computed for it (weighted there): DeepEP's
    // combine reduces them on the receiving side. An op of its own, so that its time is not charged to the next norm.
    ComputeShape sum;
    sum.m = returned_rows;
    sum.n = m.hidden_size;
    sum.out_rows = n;
    const auto combined = e.compute("moe.combine_sum", ComputeKind::kMoeUnpermute, sum, act, {returned});
    mlp_out = shared == kNoOp ? combined
                              : e.compute("moe.shared_add", ComputeKind::kResidualAdd, norm, act, {combined, shared});
  } else {
    const auto family = gather_family(c);
    const auto group = e.layout().group_size(family);
    // Every shard is padded to the group's largest before the gather (SGLang pads to a multiple of attn_cp).
    const auto shard_max = ctx.tokens.max_local * ctx.tokens.requests;
    const auto padded = split_tp ? (shard_max + attn_tp - 1) / attn_tp : shard_max;
    OpRef ready = normed;
    const auto gathered_tokens = padded * group;
    if (group > 1) {
      ready = e.collective("moe.token_all_gather", CollectiveKind::kAllGather, family,
                           bytes_of(padded * m.hidden_size, act), act, {normed});
    }
    const auto routed = route(ctx, e, gathered_tokens, ready);
    const auto experts =
        run_experts(ctx, e, gathered_tokens, ctx.routing->rows_per_expert(e.layer(), gathered_tokens), routed);
    const auto shared = shared_experts(ctx, e, gathered_tokens, ready);
    ComputeShape all;
    all.m = gathered_tokens;
    all.n = m.hidden_size;
    OpRef summed =
        shared == kNoOp ? experts : e.compute("moe.shared_add", ComputeKind::kResidualAdd, all, act, {experts, shared});
    // The gather family is the MoE TP group itself (gather mode needs ep = moe_dp = 1), so the reduce-scatter also
    // completes the TP reduction.
    if (group > 1) {
      summed = e.collective("moe.token_reduce_scatter", CollectiveKind::kReduceScatter, family,
                            bytes_of(padded * m.hidden_size, act), act, {summed});
    }
    mlp_out = summed;
  }
  ResidualStream out{residual, mlp_out, n, "moe.residual_add"};
  if (split_tp) {
    // The next norm sees the gathered rows, not these: the add runs alone before the gather.
    const auto whole = close_stream(ctx, e, out);
    return {e.collective("moe.attn_tp_all_gather", CollectiveKind::kAllGather, GroupFamily::kAttnTp,
                         bytes_of(n * m.hidden_size, act), act, {whole}),
            kNoOp,
            0,
            {}};
  }
  return out;  // added by the next layer's input norm (or close_stream)
}

}  // namespace paratwin::build
