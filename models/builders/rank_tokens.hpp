#pragma once
/// Which tokens each rank processes, for prefill (split over CP, chunked over PP micro-batches) and decode (one
/// new token per request, replicated on the CP ranks).

#include <vector>

#include "models/builders/layer_context.hpp"

namespace paratwin::build {

/// The micro-batch chunks of a prefill prompt (contiguous, near-equal), or one chunk for decode.
[[nodiscard]] std::vector<Chunk> micro_batch_chunks(const ScheduleOptions& options, int micro_batches);

/// The tokens of `coords`'s rank in micro-batch `chunk`.
[[nodiscard]] RankTokens rank_tokens(const ParallelConfig& config, const ScheduleOptions& options,
                                     const RankCoords& coords, const Chunk& chunk);

/// Tokens a rank routes through an MoE layer (its local tokens, split over attention TP when the layer does so).
[[nodiscard]] std::int64_t moe_tokens(const ParallelConfig& config, const RankTokens& tokens);

}  // namespace paratwin::build
