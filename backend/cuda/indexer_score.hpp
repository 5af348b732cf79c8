#pragma once
/// The DSA indexer's kernels behind launch_indexer_score and launch_indexer_score_fp8 (kernels.hpp), for tests and
/// benchmarks that compare them. bf16 operands: the Hopper kernel (wgmma, TMA, warp-specialized; indexer_wgmma.cu),
/// the mma.sync kernel it superseded (the fallback for shapes the Hopper kernel does not take) and the reference kernel
/// (any head count and dimension; dsa_kernels.cu). fp8 operands (e4m3 q and k, per-key scales, fp32 head weights):
/// the Hopper kernel (indexer_fp8_wgmma.cu) and a reference kernel (any shape, any GPU; dsa_kernels.cu); no mma.sync
/// form.

#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::cuda {

enum class IndexerKernel : int { kWgmma = 0, kMmaSync = 1, kReference = 2 };

/// "wgmma", "mma.sync", "reference".
[[nodiscard]] const char* to_string(IndexerKernel kernel);

/// The kernel launch_indexer_score runs for these arguments (the first of wgmma, mma.sync, reference that takes them).
[[nodiscard]] IndexerKernel indexer_kernel_for(const void* q, const void* k, std::int64_t queries, std::int64_t keys,
                                               std::int64_t heads, std::int64_t dim);

/// launch_indexer_score's computation on the given kernel; returns false (and launches nothing) when that kernel does
/// not take the arguments.
[[nodiscard]] bool launch_indexer_score_on(IndexerKernel kernel, const void* q, const void* k, const void* w,
                                           float* out, std::int64_t queries, std::int64_t keys, std::int64_t heads,
                                           std::int64_t dim, std::int64_t q_start, std::int64_t q_stride, bool causal,
                                           cudaStream_t stream);

/// Whether the wgmma kernel takes these arguments: 64 heads × 128 dims, q and k 16-byte aligned, queries · 64 and keys
/// below 2³¹ (the copy engine's coordinates are 32-bit), a Hopper GPU and a driver that encodes tensor maps.
[[nodiscard]] bool indexer_wgmma_takes(const void* q, const void* k, std::int64_t queries, std::int64_t keys,
                                       std::int64_t heads, std::int64_t dim);

/// The wgmma kernel (indexer_wgmma.cu), for arguments indexer_wgmma_takes accepts; false (nothing launched) when the
/// driver refuses the operands' tensor maps.
[[nodiscard]] bool launch_indexer_score_wgmma(const void* q, const void* k, const void* w, float* out,
                                              std::int64_t queries, std::int64_t keys, std::int64_t q_start,
                                              std::int64_t q_stride, bool causal, cudaStream_t stream);

// ---- fp8 operands (launch_indexer_score_fp8's contract) ---------------------------------------------------------

/// The kernel launch_indexer_score_fp8 runs for these arguments: kWgmma where indexer_fp8_wgmma_takes them, else
/// kReference.
[[nodiscard]] IndexerKernel indexer_fp8_kernel_for(const void* q, const void* k, std::int64_t queries,
                                                   std::int64_t keys, std::int64_t heads, std::int64_t dim);

/// launch_indexer_score_fp8's computation on the given kernel; returns false (and launches nothing) when that kernel
/// does not take the arguments (kMmaSync never does).
[[nodiscard]] bool launch_indexer_score_fp8_on(IndexerKernel kernel, const void* q, const void* k, const float* k_scale,
                                               const float* w, float* out, std::int64_t queries, std::int64_t keys,
                                               std::int64_t heads, std::int64_t dim, std::int64_t q_start,
                                               std::int64_t q_stride, bool causal, cudaStream_t stream);

/// Whether the fp8 wgmma kernel takes these arguments: 64 heads × 128 dims (cuda_plan::kFp8IndexerHeads,
/// kFp8IndexerHeadDim), q and k 16-byte aligned, coordinates within the copy engine's (cuda_plan::
/// fp8_indexer_coordinates_fit), a Hopper GPU and a driver that encodes tensor maps.
[[nodiscard]] bool indexer_fp8_wgmma_takes(const void* q, const void* k, std::int64_t queries, std::int64_t keys,
                                           std::int64_t heads, std::int64_t dim);

/// The fp8 wgmma kernel (indexer_fp8_wgmma.cu), for arguments indexer_fp8_wgmma_takes accepts; false (nothing
/// launched) when the driver refuses the operands' tensor maps.
[[nodiscard]] bool launch_indexer_score_fp8_wgmma(const void* q, const void* k, const float* k_scale, const float* w,
                                                  float* out, std::int64_t queries, std::int64_t keys,
                                                  std::int64_t q_start, std::int64_t q_stride, bool causal,
                                                  cudaStream_t stream);

}  // namespace paratwin::cuda
