// Dense feed-forward (SwiGLU) under attention TP: gate/up column-parallel, down row-parallel, then an all-reduce
// over ATTN_TP. Under CP the tokens stay split: SGLang runs DeepSeek's dense layers locally (moe_dense_tp_size 1).
#include "models/builders/layer_context.hpp"

namespace paratwin::build {

ResidualStream dense_mlp(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& m = ctx.model;
  const auto n = ctx.tokens.local();
  const int attn_tp = ctx.config().attn_tp_size();
  const auto act = ctx.activation_dtype;
  const auto ffn = m.intermediate_size / attn_tp;
  const auto [normed, residual] = open_stage(ctx, e, input, n, {"mlp.norm", "mlp.add_norm"});
  ComputeShape gate_up;
  gate_up.m = n;
  gate_up.n = 2 * ffn;
  gate_up.k = m.hidden_size;
  const auto up = e.compute("mlp.gate_up_proj", ComputeKind::kGemm, gate_up, ctx.weight_dtype(), {normed});
  ComputeShape swiglu;
  swiglu.m = n;
  swiglu.n = ffn;
  const auto activated = e.compute("mlp.act", ComputeKind::kActivation, swiglu, act, {up});
  ComputeShape down;
  down.m = n;
  down.n = m.hidden_size;
  down.k = ffn;
  OpRef out = e.compute("mlp.down_proj", ComputeKind::kGemm, down, ctx.weight_dtype(), {activated});
  if (attn_tp > 1) {
    out =
        e.collective("mlp.all_reduce", CollectiveKind::kAllReduce, GroupFamily::kAttnTp,
                     static_cast<std::int64_t>(static_cast<double>(n * m.hidden_size) * dtype_bytes(act)), act, {out});
  }
  return {residual, out, n, "mlp.residual_add"};  // added by the next layer's input norm (or close_stream)
}

}  // namespace paratwin::build
