// Dense feed-forward (SwiGLU) under attention TP: gate/up column-parallel, down row-parallel, then an all-reduce
// over ATTN_TP. Under CP the tokens stay split: SGLang runs DeepSeek's dense layers locally (moe_dense_tp_size 1).
#include "models/builders/layer_context.hpp"

namespace paratwin::build {

OpRef swiglu_ffn(LayerContext& ctx, RankEmitter& e, std::int64_t rows, std::int64_t ffn, const std::string& prefix,
                 OpRef input) {
  const auto hidden = ctx.model.hidden_size;
  ComputeShape gate_up;
  gate_up.m = rows;
  gate_up.n = 2 * ffn;
  gate_up.k = hidden;
  const auto up = e.compute(prefix + "gate_up_proj", ComputeKind::kGemm, gate_up, ctx.weight_dtype(), {input});
  ComputeShape swiglu;
  swiglu.m = rows;
  swiglu.n = ffn;
  const auto activated = e.compute(prefix + "act", ComputeKind::kActivation, swiglu, ctx.activation_dtype, {up});
  ComputeShape down;
  down.m = rows;
  down.n = hidden;
  down.k = ffn;
  return e.compute(prefix + "down_proj", ComputeKind::kGemm, down, ctx.weight_dtype(), {activated});
}

ResidualStream dense_mlp(LayerContext& ctx, RankEmitter& e, const ResidualStream& input) {
  const auto& m = ctx.model;
  const auto n = ctx.tokens.local();
  const int attn_tp = ctx.config().attn_tp_size();
  const auto act = ctx.activation_dtype;
  const auto [normed, residual] = open_stage(ctx, e, input, n, {"mlp.norm", "mlp.add_norm"});
  OpRef out = swiglu_ffn(ctx, e, n, m.intermediate_size / attn_tp, "mlp.", normed);
  if (attn_tp > 1) {
    out =
        e.collective("mlp.all_reduce", CollectiveKind::kAllReduce, GroupFamily::kAttnTp,
                     static_cast<std::int64_t>(static_cast<double>(n * m.hidden_size) * dtype_bytes(act)), act, {out});
  }
  return {residual, out, n, "mlp.residual_add"};  // added by the next layer's input norm (or close_stream)
}

}  // namespace paratwin::build
