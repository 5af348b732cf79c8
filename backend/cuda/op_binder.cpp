#include "backend/cuda/op_binder.hpp"

#include <fmt/format.h>

#include "backend/cuda/binder.hpp"
#include "topology/error.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::cuda {
namespace binding {

void Binder::bind() {
  runs_ = runs_by_micro_batch(s_, layout_, rank_);
  cache_rows_ = s_.meta.prompt_tokens + (s_.meta.phase == Phase::kDecode ? 1 : 0);
  p_.ops.resize(ops_.size());
  const bool functional = functional_model();
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const auto& op = ops_[i];
    auto& b = p_.ops[i];
    b.functional = functional && bind_functional(op, b);
    if (!b.functional) {
      p_.generic_ops.push_back(op.name);
      bind_generic(op, b);
    }
  }
  p_.outputs.hidden_size = m_.hidden_size;
}

void Binder::bind_comm(const Op& op, BoundOp& b, int send, int recv) {
  if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
    b.call = cuda_plan::translate_collective(*c, op.name);
  } else {
    b.call = cuda_plan::translate_p2p(std::get<P2POp>(op.body), op.name);
  }
  const bool is_recv = b.call.function == cuda_plan::NcclFunction::kRecv;
  if (is_recv) {
    // A receive writes its (only) buffer.
    b.send_buffer = -1;
    b.recv_buffer = recv >= 0 ? recv : send;
    p_.pool.grow(b.recv_buffer, b.call.recv_buffer_bytes);
    return;
  }
  b.send_buffer = send;
  p_.pool.grow(send, b.call.send_buffer_bytes);
  if (b.call.recv_buffer_bytes > 0) {
    PARATWIN_ASSERT(recv >= 0, "op {} needs a receive buffer", op.name);
    b.recv_buffer = recv;
    p_.pool.grow(recv, b.call.recv_buffer_bytes);
  }
}

}  // namespace binding

void bind_rank(const Schedule& schedule, const ModelSpec& model, int rank, std::uint64_t seed,
               const BindOptions& options, RankProgram& program) {
  binding::Binder binder(schedule, model, rank, seed, options, program);
  binder.bind();
  // Outputs for the numerical check: the residual stream of each micro-batch on the last PP stage.
  const RankLayout layout(schedule.meta.config);
  if (layout.coords(rank).pp_rank == schedule.meta.config.pp_size - 1) {
    for (const auto& [mb, runs] : binding::runs_by_micro_batch(schedule, layout, rank)) {
      RankOutputs::Rows rows;
      rows.buffer = program.pool.request(fmt::format("mb{}.x", mb), 0);
      runs.for_each_row([&](std::int64_t, std::int64_t req, std::int64_t pos) {
        rows.request.push_back(req);
        rows.position.push_back(pos);
      });
      program.outputs.hidden.push_back(std::move(rows));
    }
  }
}

MoeGemmLaunches moe_gemm_launches(const RankProgram& program) {
  using cuda_plan::MoeGemmMethod;
  MoeGemmLaunches out;
  out.ops.assign(2, 0);
  out.fp8_ops = program.fp8_moe_gemms;
  out.fp8_kernel_ops = program.fp8_moe_kernel_gemms;
  out.fallbacks = program.fp8_moe_fallbacks;
  for (const auto& g : program.moe_gemms) {
    auto method = g.method;
    std::string why = g.fallback;
    if (method == MoeGemmMethod::kHopperKernel && !g.empty && !program.pool.kernel_tables(g.kernel_tables).ready()) {
      method = MoeGemmMethod::kCublasStreams;
      why = "no tensor maps for its operands (W, X and Y of every expert must be 16-byte aligned for the copy engine)";
    }
    ++out.ops[static_cast<std::size_t>(method)];
    if (!why.empty()) out.fallbacks.push_back(std::move(why));
  }
  return out;
}

}  // namespace paratwin::cuda
