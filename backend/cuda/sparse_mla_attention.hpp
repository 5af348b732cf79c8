#pragma once
/// DeepSeek-V3.2's index-sparse attention in MLA's absorbed (MQA) form on the tensor cores: every head of a query
/// attends to the same `keys_per_query` latent rows (key_index), each 576 wide (512 latent + 64 RoPE dims), whose first
/// 512 dims are also the values. Same results as launch_attention (kernels.hpp) within bf16 rounding.

#include <cuda_runtime.h>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {

/// Whether launch_sparse_mla_attention computes `a`: key_index set, one KV head, head dims 576/512, heads a multiple of
/// 64, values = the first 512 dims of the key rows (a.v == a.k, same row stride), bf16 output (not the partial form),
/// rows 16-byte aligned.
[[nodiscard]] bool sparse_mla_attention_takes(const AttentionArgs& a);

/// Enqueues `a` (sparse_mla_attention_takes(a) must hold): one block per (request, query, 64 heads); the selected rows
/// are gathered 32 at a time into shared memory (cp.async, two stages) and S = Q·Kᵀ, the online softmax and O += P·V
/// run on mma.sync m16n8k16 in registers.
void launch_sparse_mla_attention(const AttentionArgs& a, cudaStream_t stream);

}  // namespace paratwin::cuda
