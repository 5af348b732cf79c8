#include "models/builders/rank_tokens.hpp"

namespace paratwin::build {

std::vector<Chunk> micro_batch_chunks(const ScheduleOptions& options, int micro_batches) {
  if (options.phase == Phase::kDecode) return {{options.prompt_tokens, 1}};
  return even_chunks(options.prompt_tokens, micro_batches);
}

RankTokens rank_tokens(const ParallelConfig& config, const ScheduleOptions& options, const RankCoords& coords,
                       const Chunk& chunk) {
  RankTokens t;
  t.requests = options.batch / config.attn_dp_size();
  if (options.phase == Phase::kDecode) {
    // One new token per request at position `context`; every CP rank of the replica runs the same batch.
    t.runs = {{options.prompt_tokens, 1, 1}};
    t.context_end = options.prompt_tokens + 1;
    t.chunk_tokens = 1;
    t.max_local = 1;
    t.split_over_cp = false;
    return t;
  }
  const int cp = config.attn_cp_size;
  t.runs = split_tokens(options.cp_split, chunk.count, cp, coords.attn_cp_rank);
  for (auto& run : t.runs) run.start += chunk.start;
  t.context_end = chunk.start + chunk.count;
  t.chunk_tokens = chunk.count;
  t.max_local = max_local_tokens(options.cp_split, chunk.count, cp);
  t.split_over_cp = true;
  return t;
}

std::int64_t moe_tokens(const ParallelConfig& config, const RankTokens& tokens) {
  const int attn_tp = config.attn_tp_size();
  return attn_tp > 1 ? (tokens.local() + attn_tp - 1) / attn_tp : tokens.local();
}

}  // namespace paratwin::build
