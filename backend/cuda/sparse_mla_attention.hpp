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

/// Enqueues `a` (sparse_mla_attention_takes(a) must hold) on the kernel sparse_mla_kernel_for(a) names.
void launch_sparse_mla_attention(const AttentionArgs& a, cudaStream_t stream);

/// The two kernels: warpgroup MMA (sparse_mla_wgmma.cu, Hopper only) and mma.sync (sparse_mla_attention.cu, its
/// fallback). Both run one block per (request, query, 64 heads) over the selected latent rows gathered into shared
/// memory (cp.async), with the online softmax and O in registers.
enum class SparseMlaKernel : int { kWgmma = 0, kMmaSync = 1 };

/// "wgmma", "mma.sync".
[[nodiscard]] const char* to_string(SparseMlaKernel kernel);

/// The kernel launch_sparse_mla_attention runs for `a` (sparse_mla_attention_takes(a) must hold): wgmma on a Hopper
/// GPU, mma.sync elsewhere.
[[nodiscard]] SparseMlaKernel sparse_mla_kernel_for(const AttentionArgs& a);

/// `a` on the given kernel; false (nothing launched) when that kernel does not take `a`.
[[nodiscard]] bool launch_sparse_mla_attention_on(SparseMlaKernel kernel, const AttentionArgs& a, cudaStream_t stream);

/// Whether the wgmma kernel takes `a`: sparse_mla_attention_takes(a) on a Hopper GPU (the kernel is sm_90a code).
[[nodiscard]] bool sparse_mla_wgmma_takes(const AttentionArgs& a);

/// The wgmma kernel, for arguments sparse_mla_wgmma_takes accepts: 64-key tiles in pairs through two buffers (each
/// filled and released in two halves) by a producer warpgroup; each of two consumer warpgroups computes one tile of a
/// pair's scores (wgmma m64n64k16) and softmax, the two agree on the pair's row maxima, and each accumulates half of
/// the 512 value dims over both tiles (m64n256k16, its own probabilities from registers) and writes them through shared
/// memory with bulk copies.
void launch_sparse_mla_wgmma(const AttentionArgs& a, cudaStream_t stream);

}  // namespace paratwin::cuda
