#pragma once
/// Binds one rank's ops to device buffers and kernels. Every op gets buffers sized from its shape or bytes and the
/// kernel of its kind. For dense GQA/MHA layers (all-gather, ring and Ulysses CP, attention TP, PP) and for MoE layers
/// built with per-token routing, the ops also carry the real data flow (the functional executor): named tensors
/// (residual stream, QKV, KV cache, ...) wired by each op's role in its name ("L3.attn.kv_all_gather" → role
/// "attn.kv_all_gather"), weights seeded from the full (unsharded) tensor so that any layout computes the same
/// function as a single GPU. Other ops (MLA, DSA, shared experts) run their kernels on scratch buffers of their real
/// shapes. The binder itself is internal: binder.hpp.

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/buffer_pool.hpp"
#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda_plan/moe_gemm_rule.hpp"
#include "backend/cuda_plan/nccl_call_plan.hpp"
#include "backend/moe_gemm_choice.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"

namespace paratwin::cuda {

struct ExecCtx {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  const BufferPool* pool = nullptr;
  cublasLtHandle_t blas_lt = nullptr;  ///< fp8 GEMMs
  void* lt_workspace = nullptr;
  std::size_t lt_workspace_bytes = 0;
  void* attention_workspace = nullptr;  ///< S and P of attention_gemm, fused attention's (attention_dispatch.hpp)
  std::size_t attention_workspace_bytes = 0;
  CudnnAttention* cudnn_attention = nullptr;       ///< fused attention; null: unfused only
  AttentionPathCounts* attention_paths = nullptr;  ///< calls per attention path, counted when set
  const GemmStreams* gemm_streams = nullptr;       ///< side streams of the expert GEMMs (grouped_gemm.hpp)
};

/// One op, bound: a compute op's launch, or a communication with its NCCL call and buffers.
struct BoundOp {
  std::function<void(const ExecCtx&)> compute;
  cuda_plan::NcclCall call;
  int send_buffer = -1, recv_buffer = -1;  ///< in-place calls use send_buffer only
  bool functional = false;                 ///< carries the real data flow
};

/// Where a rank's outputs are after a step, for the numerical check.
struct RankOutputs {
  struct Rows {
    int buffer = -1;  ///< the residual stream after the rank's last layer (bf16, rows × hidden)
    std::vector<std::int64_t> request, position;  ///< per local row
  };
  std::vector<Rows> hidden;  ///< per micro-batch (ranks of the last PP stage only)
  int logits_buffer = -1;    ///< fp32 [requests × vocab] (all-gathered over attention TP), last micro-batch
  std::int64_t logits_cols = 0;
  std::int64_t hidden_size = 0;
};

/// How one MoE expert GEMM (a bf16 grouped GEMM of a "moe.*" role) is launched: the method decided when it was bound
/// (cuda_plan::decide_moe_gemm) and, for the Hopper kernel, its device tables in the pool.
struct MoeGemmBinding {
  std::string op;
  cuda_plan::MoeGemmMethod method = cuda_plan::MoeGemmMethod::kCublasStreams;
  std::string fallback;    ///< why the kernel, asked for or picked, cannot run the op (decided at bind time)
  int kernel_tables = -1;  ///< BufferPool::grouped_kernel_tables where `method` is the kernel
  bool empty = false;      ///< every expert has 0 rows: nothing runs
};

struct RankProgram {
  BufferPool pool;
  std::vector<BoundOp> ops;
  RankOutputs outputs;
  std::vector<std::string> generic_ops;  ///< names of ops without the real data flow
  std::vector<MoeGemmBinding> moe_gemms;
  /// fp8 MoE expert GEMMs (fp8_grouped_gemm.hpp), counted apart from the bf16 ones: on block-scaled cuBLASLt over
  /// the side streams, and on the persistent fp8 kernel (cuda_plan::decide_fp8_moe_gemm), and why those that wanted
  /// the kernel run the streams.
  std::int64_t fp8_moe_gemms = 0;
  std::int64_t fp8_moe_kernel_gemms = 0;
  std::vector<std::string> fp8_moe_fallbacks;
  /// DSA indexer-score ops (cuda_plan::indexer_score_path): on the fp8 Hopper kernel, on the bf16 kernels, and why the
  /// fp8 ops among the latter cannot run the fp8 kernel (one entry per op).
  std::int64_t indexer_fp8_ops = 0;
  std::int64_t indexer_bf16_ops = 0;
  std::vector<std::string> indexer_fp8_fallbacks;
  /// Every attention call's arguments as they resolve against the allocated pool: the engine runs each distinct one
  /// once before the first step, so that no step loads an attention kernel (the engine's load_attention_kernels).
  std::vector<std::function<AttentionArgs(const BufferPool&)>> attention_calls;
  /// An fp8 GEMM of more than one group (Fp8GroupedGemm): only then do the side streams need cuBLASLt workspaces of
  /// their own (kGemmSideStreams × kLtWorkspaceBytes), so the engine allocates them only then.
  bool fp8_side_streams = false;
};

/// What the binder needs beyond the schedule: the user's MoE GEMM choice and the GPU it binds for.
struct BindOptions {
  MoeGemmChoice moe_gemm = MoeGemmChoice::kAuto;
  int compute_capability = 0;  ///< major × 10 + minor of the rank's GPU
};

/// Binds every op of `rank`. `model` gives the dimensions the weights need; `seed` seeds weights and token ids.
/// Throws paratwin::Error for ops the backend cannot run (fp8 GEMMs, top-k above 32, ...), naming the op.
void bind_rank(const Schedule& schedule, const ModelSpec& model, int rank, std::uint64_t seed,
               const BindOptions& options, RankProgram& program);

/// The MoE expert GEMMs of `program` as they launch once its pool is allocated: op counts in MoeGemmMethod order,
/// and for each op that runs cuBLAS streams for want of the kernel, why (bind-time reasons, or operands that the
/// pool could not encode tensor maps for).
struct MoeGemmLaunches {
  std::vector<std::int64_t> ops;
  std::vector<std::string> fallbacks;
  std::int64_t fp8_ops = 0;         ///< RankProgram::fp8_moe_gemms
  std::int64_t fp8_kernel_ops = 0;  ///< RankProgram::fp8_moe_kernel_gemms
};
[[nodiscard]] MoeGemmLaunches moe_gemm_launches(const RankProgram& program);

}  // namespace paratwin::cuda
