#pragma once
/// Picks the kernel of one attention call: cuDNN's fused flash attention (attention_cudnn.hpp) when it computes the
/// call exactly, directly or, for causal attention over strided positions (round-robin CP), as diagonal calls
/// (attention_strided.hpp), else the unfused tensor-core attention (attention_gemm.hpp); index-sparse attention in MLA's absorbed
/// form runs on sparse_mla_attention.hpp's kernel; anything else (or no workspace) on the backend's reference kernel
/// (launch_attention). All give the same results.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {

enum class AttentionPath : int { kCudnnFused = 0, kCublas = 1, kReference = 2, kSparseMla = 3 };
inline constexpr std::size_t kAttentionPathCount = 4;

/// "cuDNN fused", "cuBLAS unfused", "reference kernel", "sparse MLA".
[[nodiscard]] const char* to_string(AttentionPath path);

/// Calls per path (indexed by AttentionPath), so a run can say which kernels its attention ran on.
using AttentionPathCounts = std::array<std::int64_t, kAttentionPathCount>;

struct AttentionResources {
  CudnnAttention* cudnn = nullptr;  ///< null: no fused path
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;  ///< null: the reference kernel only
  std::size_t workspace_bytes = 0;
};

/// Enqueues `a` on `stream` on the first path that takes it and returns that path.
AttentionPath dispatch_attention(const AttentionArgs& a, const AttentionResources& r, cudaStream_t stream);

/// What picks the kernels of an attention call: every field of `a` but the pointers and the scale, and of those whether each is
/// set and 16-byte aligned. Calls with equal keys take the same path and launch the same kernels (for the fused
/// path, the same cuDNN plan).
[[nodiscard]] std::string attention_kernel_key(const AttentionArgs& a);

}  // namespace paratwin::cuda
