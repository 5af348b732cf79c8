#include "backend/cuda/binder.hpp"

#include <cmath>
#include <memory>

#include "backend/cuda/cuda_check.hpp"
#include "models/builders/op_emitter.hpp"
#include "models/builders/rank_tokens.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda::binding {

// Row-major Y[m × n] = X[m × k] · W[k × n] (bf16 in; bf16 or fp32 out; fp32 accumulation). Column-major cuBLAS
// sees Yᵀ = Wᵀ · Xᵀ with no transposes.
void gemm(const ExecCtx& ctx, const void* x, const void* w, void* y, i64 m, i64 n, i64 k, bool fp32_out) {
  if (m == 0 || n == 0) return;
  const float alpha = 1.0f, beta = 0.0f;
  PARATWIN_CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                     static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(n), x, CUDA_R_16BF,
                                     static_cast<int>(k), &beta, y, fp32_out ? CUDA_R_32F : CUDA_R_16BF,
                                     static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

namespace {

// What every launch of a bound grouped GEMM runs on: the rank's handle, stream and side streams, and its host pointer
// table (`table` in the pool) resolved.
GroupedGemm::Launch host_launch(const ExecCtx& e, int table) {
  GroupedGemm::Launch launch;
  launch.blas = e.blas;
  launch.stream = e.stream;
  launch.side = e.gemm_streams;
  launch.host_table = e.pool->pointers(table);
  return launch;
}

}  // namespace

// The expert GEMMs' launch. Everything is resolved once: the host pointer table when the pool is allocated, and for
// the Hopper kernel its device tables (pointer table, tile schedule, tensor maps) in the pool's memory; a launch reads
// them and allocates nothing. The kernel's launch runs cuBLAS streams where the pool made no tables (operands off the
// copy engine's 16-byte rule: the binder reports those ops, moe_gemm_launches).
BoundGroupedGemm grouped_gemm(BufferPool& pool, GroupedGemm gemm, const GroupedGemm::Operands& operands,
                              cuda_plan::MoeGemmMethod method) {
  const int table = pool.pointer_table(gemm.operand_addresses(operands));
  auto plan = std::make_shared<const GroupedGemm>(std::move(gemm));
  BoundGroupedGemm bound;
  if (method == cuda_plan::MoeGemmMethod::kHopperKernel) bound.kernel_tables = pool.grouped_kernel_tables(plan, table);
  bound.launch = [plan, table, kernel_tables = bound.kernel_tables](const ExecCtx& e) {
    GroupedGemm::Launch launch = host_launch(e, table);
    if (kernel_tables >= 0) {
      const auto& device = e.pool->kernel_tables(kernel_tables);
      if (device.ready()) {
        launch.device_table = device.pointers;
        launch.device_schedule = device.schedule;
        launch.device_tensor_maps = device.tensor_maps;
        plan->run(launch, GroupedGemmMethod::kPersistentKernel);
        return;
      }
    }
    plan->run(launch, GroupedGemmMethod::kConcurrent);
  };
  return bound;
}

std::function<void(const ExecCtx&)> batched_grouped_gemm(BufferPool& pool, GroupedGemm gemm,
                                                         const GroupedGemm::Operands& operands) {
  const int table = pool.pointer_table(gemm.operand_addresses(operands));
  auto plan = std::make_shared<const GroupedGemm>(std::move(gemm));
  return [plan, table](const ExecCtx& e) { plan->run(host_launch(e, table), GroupedGemmMethod::kStridedBatched); };
}

std::function<void(const ExecCtx&)> Binder::bind_grouped_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n,
                                                              i64 k, const GroupedGemm::Operands& operands) {
  // --moe-gemm is the MoE experts' choice (as SGLang's MoE runner). Other grouped GEMMs (MLA's per-head absorb GEMMs:
  // every head all of the rank's tokens, the heads' weights side by side) run as one batched call, as SGLang's
  // torch.bmm does: one cuBLAS GEMM per head took ~3.7 µs each at DeepSeek-V3.2's 4K-token shard, launch-bound.
  if (!runs_as_experts(op)) return batched_grouped_gemm(p_.pool, GroupedGemm(group_rows, n, k), operands);
  i64 rows = 0;
  for (const auto r : group_rows) rows += r;
  cuda_plan::MoeGemmShape shape;
  shape.rows_per_expert = group_rows.empty() ? 0.0 : static_cast<double>(rows) / static_cast<double>(group_rows.size());
  shape.n = n;
  shape.k = k;
  shape.compute_capability = options_.compute_capability;
  auto decision = cuda_plan::decide_moe_gemm(options_.moe_gemm, shape);
  auto bound = grouped_gemm(p_.pool, GroupedGemm(group_rows, n, k), operands, decision.method);
  p_.moe_gemms.push_back({op.name, decision.method, std::move(decision.fallback), bound.kernel_tables, rows == 0});
  return std::move(bound.launch);
}

void Binder::bind_attention(BoundOp& b, const std::function<AttentionArgs(const BufferPool&)>& args_of) {
  p_.attention_calls.push_back(args_of);
  b.compute = [args_of](const ExecCtx& e) { run_attention(e, args_of(*e.pool)); };
}

// Dense attention fused (cuDNN) where it computes the call exactly, else on the tensor cores unfused (cuBLAS) when
// the rank has the workspace; index-sparse attention (DSA) on the backend's own kernel. Counts the path taken.
void run_attention(const ExecCtx& e, const AttentionArgs& args) {
  const auto path = dispatch_attention(
      args, {e.cudnn_attention, e.blas, e.attention_workspace, e.attention_workspace_bytes}, e.stream);
  if (e.attention_paths != nullptr) ++(*e.attention_paths)[static_cast<std::size_t>(path)];
}

AttentionArgs dense_attention_args(const ComputeShape& shape, const AttentionHeads& h, i64 kv_batch_rows) {
  return {.q_row_stride = h.qkv_row,
          .k_row_stride = h.kv_row,
          .v_row_stride = h.kv_row,
          .out_row_stride = h.heads * h.head_dim,
          .batch = shape.batch,
          .q_tokens = shape.q_tokens,
          .kv_tokens = shape.kv_tokens,
          .kv_batch_rows = kv_batch_rows,
          .heads = h.heads,
          .kv_heads = h.kv_heads,
          .head_dim_qk = h.head_dim,
          .head_dim_v = h.head_dim,
          .q_start = shape.q_start,
          .q_stride = shape.q_stride,
          .kv_start = shape.kv_start,
          .kv_stride = shape.kv_stride,
          .causal = shape.causal,
          .scale = 1.0f / std::sqrt(static_cast<float>(h.head_dim))};
}

std::uint64_t name_seed(std::uint64_t seed, const std::string& name) {
  std::uint64_t h = 1469598103934665603ULL ^ seed;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// Token id of (request, position): the same on every layout.
int token_id(std::uint64_t seed, i64 request, i64 position, i64 vocab) {
  std::uint64_t h = seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(request * 1000003 + position);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  return static_cast<int>(h % static_cast<std::uint64_t>(vocab));
}

// The role of an op: its name without the "L3." / "mb1." prefix.
bool runs_as_experts(const Op& op) {
  return role_of(op).starts_with("moe.") || op.name.starts_with("bench.moe.");
}

std::string role_of(const Op& op) {
  const auto prefix = build::op_prefix(op.layer, op.micro_batch);
  return op.name.starts_with(prefix) ? op.name.substr(prefix.size()) : op.name;
}

// The query runs of `rank` in each micro-batch, from the same token split the builder used (models/builders).
std::map<int, Runs> runs_by_micro_batch(const Schedule& s, const RankLayout& layout, int rank) {
  const auto& meta = s.meta;
  ScheduleOptions options;
  options.phase = meta.phase;
  options.prompt_tokens = meta.prompt_tokens;
  options.batch = meta.batch;
  options.cp_algorithm = meta.cp_algorithm;
  options.cp_split = meta.cp_split;
  PARATWIN_ASSERT(meta.micro_batches > 0, "schedule meta without micro-batches");
  const auto chunks = build::micro_batch_chunks(options, meta.micro_batches);
  std::map<int, Runs> out;
  for (std::size_t mb = 0; mb < chunks.size(); ++mb) {
    const auto tokens = build::rank_tokens(meta.config, options, layout.coords(rank), chunks[mb]);
    auto& r = out[static_cast<int>(mb)];
    for (const auto& run : tokens.runs) r.runs.push_back({run.start, run.count, run.stride});
    r.batch = tokens.requests;
    r.context_end = tokens.context_end;
  }
  return out;
}

}  // namespace paratwin::cuda::binding
