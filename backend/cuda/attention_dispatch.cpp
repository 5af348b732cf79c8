#include "backend/cuda/attention_dispatch.hpp"

#include "backend/cuda/attention_gemm.hpp"
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

AttentionPath dispatch_attention(const AttentionArgs& a, const AttentionResources& r, cudaStream_t stream) {
  if (a.key_index == nullptr && r.workspace != nullptr) {
    if (r.cudnn != nullptr && r.cudnn->run(a, r.workspace, r.workspace_bytes, stream)) return AttentionPath::kCudnnFused;
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
