// The residual stream between layer stages, with SGLang's fusion of each residual add into the RMSNorm after it
// (layer_context.hpp ResidualStream).
#include "models/builders/layer_context.hpp"
#include "topology/error.hpp"

namespace paratwin::build {

NormedStream open_stage(LayerContext& ctx, RankEmitter& e, const ResidualStream& in, std::int64_t rows,
                        const StageNames& names) {
  ComputeShape norm;
  norm.m = rows;
  norm.n = ctx.model.hidden_size;
  if (in.update == kNoOp) {
    const auto normed = e.compute(names.norm, ComputeKind::kRmsNorm, norm, ctx.activation_dtype, {in.residual});
    return {normed, in.residual};
  }
  // Fusing needs the pending add and this norm to cover the same rows (a gather between them would not).
  PARATWIN_ASSERT(in.rows == rows, "rank {}: the pending {} has {} rows but {} has {}", e.rank(), in.add_name, in.rows,
                  names.norm, rows);
  const auto fused =
      e.compute(names.fused, ComputeKind::kAddRmsNorm, norm, ctx.activation_dtype, {in.update, in.residual});
  return {fused, fused};  // the fused op writes both the new residual and the normed rows
}

OpRef close_stream(LayerContext& ctx, RankEmitter& e, const ResidualStream& in) {
  if (in.update == kNoOp) return in.residual;
  ComputeShape add;
  add.m = in.rows;
  add.n = ctx.model.hidden_size;
  return e.compute(in.add_name, ComputeKind::kResidualAdd, add, ctx.activation_dtype, {in.update, in.residual});
}

}  // namespace paratwin::build
