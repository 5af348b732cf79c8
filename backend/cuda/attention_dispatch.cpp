#include "backend/cuda/attention_dispatch.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/attention_strided.hpp"
#include "backend/cuda/sparse_mla_attention.hpp"

namespace paratwin::cuda {

const char* to_string(AttentionPath path) {
  switch (path) {
    case AttentionPath::kCudnnFused:
      return "cuDNN fused";
    case AttentionPath::kCublas:
      return "cuBLAS unfused";
    case AttentionPath::kReference:
      return "reference kernel";
    case AttentionPath::kSparseMla:
      return "sparse MLA";
  }
  return "?";
}

std::string attention_kernel_key(const AttentionArgs& a) {
  // 0: null, 1: set, 2: set and 16-byte aligned (the fused path reads whole 16-byte vectors).
  const auto pointer = [](const void* p) {
    return p == nullptr ? 0 : (reinterpret_cast<std::uintptr_t>(p) % 16 == 0 ? 2 : 1);
  };
  return fmt::format("{} {} {} {} {} {} {} | {} {} {} {} | {} {} {} {} | {} {} {} {} | {} {} {} {} | {} {}",
                     pointer(a.q), pointer(a.k), pointer(a.v), pointer(a.out), pointer(a.out_f32), pointer(a.lse),
                     pointer(a.key_index), a.q_row_stride, a.k_row_stride, a.v_row_stride, a.out_row_stride, a.batch,
                     a.q_tokens, a.kv_tokens, a.kv_batch_rows, a.heads, a.kv_heads, a.head_dim_qk, a.head_dim_v,
                     a.q_start, a.q_stride, a.kv_start, a.kv_stride, a.causal, a.keys_per_query);
}

AttentionPath dispatch_attention(const AttentionArgs& a, const AttentionResources& r, cudaStream_t stream) {
  if (a.key_index == nullptr && r.workspace != nullptr) {
    if (r.cudnn != nullptr && (r.cudnn->run(a, r.workspace, r.workspace_bytes, stream) ||
                               run_strided_causal_cudnn(*r.cudnn, a, r.workspace, r.workspace_bytes, stream))) {
      return AttentionPath::kCudnnFused;
    }
    attention_gemm(a, r.blas, r.workspace, r.workspace_bytes, stream);
    return AttentionPath::kCublas;
  }
  if (sparse_mla_attention_takes(a)) {
    launch_sparse_mla_attention(a, stream);
    return AttentionPath::kSparseMla;
  }
  launch_attention(a, stream);
  return AttentionPath::kReference;
}

}  // namespace paratwin::cuda
