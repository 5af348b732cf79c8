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
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda_plan/nccl_call_plan.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"

namespace paratwin::cuda {

inline constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

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

struct RankProgram {
  BufferPool pool;
  std::vector<BoundOp> ops;
  RankOutputs outputs;
  std::vector<std::string> generic_ops;  ///< names of ops without the real data flow
};

/// Binds every op of `rank`. `model` gives the dimensions the weights need; `seed` seeds weights and token ids.
/// Throws paratwin::Error for ops the backend cannot run (fp8 GEMMs, top-k above 32, ...), naming the op.
void bind_rank(const Schedule& schedule, const ModelSpec& model, int rank, std::uint64_t seed, RankProgram& program);

}  // namespace paratwin::cuda
