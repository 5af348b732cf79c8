#pragma once
/// Which kernel family the CUDA backend runs a DSA indexer-score op on (ComputeKind::kIndexerScore): the fp8 Hopper
/// kernel (backend/cuda/indexer_fp8_wgmma.cu: e4m3 q and k, one fp32 scale per key, fp32 head weights) where the op
/// is fp8, the GPU is sm_90 and the shape is the kernel's; else the bf16 kernels (launch_indexer_score), on operands
/// sized as bf16. Decided once per op when it is bound, from the op and the GPU's compute capability alone: plain C++,
/// so the CPU tests check it.

#include <cstdint>
#include <string>

namespace paratwin::cuda_plan {

enum class IndexerScorePath { kBf16, kFp8Wgmma };

/// What the decision reads of one indexer-score op (per request) and its GPU.
struct IndexerScoreShape {
  bool fp8 = false;  ///< the op's dtype is fp8 (what models/builders emits for DeepSeek-V3.2's indexer)
  std::int64_t queries = 0, keys = 0, heads = 0, head_dim = 0;
  int compute_capability = 0;  ///< major × 10 + minor: 90 for an H100 or H200
};

/// The fp8 kernel's one shape: DeepSeek-V3.2's 64 indexer heads of 128 dims (one 128-byte e4m3 row per head).
inline constexpr std::int64_t kFp8IndexerHeads = 64;
inline constexpr std::int64_t kFp8IndexerHeadDim = 128;

/// Whether the fp8 kernel's copy-engine coordinates (32-bit: q rows = queries · 64 plus one block's rounding, keys
/// plus one tile's) hold `queries` × `keys`.
[[nodiscard]] constexpr bool fp8_indexer_coordinates_fit(std::int64_t queries, std::int64_t keys) {
  constexpr std::int64_t kMaxCoordinate = 2147483647;
  return queries > 0 && keys > 0 && (queries + 8) * kFp8IndexerHeads <= kMaxCoordinate && keys + 64 <= kMaxCoordinate;
}

/// Why an fp8 op cannot run on the fp8 kernel ("the GPU is sm_80; the fp8 indexer kernel runs on sm_90 only", "32
/// heads x 128 dims: the fp8 indexer kernel takes 64 x 128 only", ...); empty where it can, and for a bf16 op (which
/// runs the bf16 kernels by its own type).
[[nodiscard]] std::string fp8_indexer_unsupported_reason(const IndexerScoreShape& shape);

/// The op's path: kFp8Wgmma for an fp8 op that fp8_indexer_unsupported_reason clears, else kBf16.
[[nodiscard]] IndexerScorePath indexer_score_path(const IndexerScoreShape& shape);

}  // namespace paratwin::cuda_plan
