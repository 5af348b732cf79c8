#pragma once
/// Dense attention on the tensor cores through cuBLAS: per block of queries and heads, S = scale · Q·Kᵀ (fp32) over
/// the keys the block may see, a masked softmax into P (bf16) with each row's log-sum-exp, and O = P·V. The same
/// arguments and results as launch_attention (kernels.hpp) for dense attention (key_index null), including the
/// partial form of ring CP (out_f32 and lse). Unfused: S and P live in `workspace`, so the speed is bound by their
/// traffic at long contexts; the fused kernels are issue 6's work.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {

/// Workspace the engine gives every rank for attention_gemm.
inline constexpr std::size_t kAttentionWorkspaceBytes = std::size_t{512} << 20;

/// Throws paratwin::Error when the heads do not divide into KV-head groups or one query row of one head does not fit
/// the workspace; cuBLAS errors are paratwin::Error naming the call.
void attention_gemm(const AttentionArgs& a, cublasHandle_t blas, void* workspace, std::size_t workspace_bytes,
                    cudaStream_t stream);

}  // namespace paratwin::cuda
