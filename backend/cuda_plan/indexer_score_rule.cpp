#include "backend/cuda_plan/indexer_score_rule.hpp"

#include <fmt/format.h>

namespace paratwin::cuda_plan {

std::string fp8_indexer_unsupported_reason(const IndexerScoreShape& shape) {
  if (!shape.fp8) return {};
  if (shape.compute_capability != 90) {
    return fmt::format("the GPU is sm_{}; the fp8 indexer kernel runs on sm_90 only", shape.compute_capability);
  }
  if (shape.heads != kFp8IndexerHeads || shape.head_dim != kFp8IndexerHeadDim) {
    return fmt::format("{} heads x {} dims: the fp8 indexer kernel takes {} x {} only", shape.heads, shape.head_dim,
                       kFp8IndexerHeads, kFp8IndexerHeadDim);
  }
  if (!fp8_indexer_coordinates_fit(shape.queries, shape.keys)) {
    return fmt::format("{} queries x {} keys: empty, or past the copy engine's 32-bit coordinates", shape.queries,
                       shape.keys);
  }
  return {};
}

IndexerScorePath indexer_score_path(const IndexerScoreShape& shape) {
  return shape.fp8 && fp8_indexer_unsupported_reason(shape).empty() ? IndexerScorePath::kFp8Wgmma
                                                                    : IndexerScorePath::kBf16;
}

}  // namespace paratwin::cuda_plan
