#include "models/builders/token_split.hpp"

#include <algorithm>

#include "topology/error.hpp"

namespace paratwin::build {

std::vector<Chunk> even_chunks(std::int64_t tokens, int parts) {
  PARATWIN_ASSERT(parts > 0 && tokens >= 0, "even_chunks({}, {})", tokens, parts);
  std::vector<Chunk> chunks(static_cast<std::size_t>(parts));
  const std::int64_t base = tokens / parts;
  const std::int64_t extra = tokens % parts;
  std::int64_t start = 0;
  for (int i = 0; i < parts; ++i) {
    const std::int64_t count = base + (i < extra ? 1 : 0);
    chunks[static_cast<std::size_t>(i)] = {start, count};
    start += count;
  }
  return chunks;
}

std::vector<TokenRun> split_tokens(CpSplit split, std::int64_t tokens, int cp, int cp_rank) {
  PARATWIN_ASSERT(cp_rank >= 0 && cp_rank < cp, "cp rank {} of {}", cp_rank, cp);
  if (split == CpSplit::kRoundRobin) {
    const std::int64_t count = tokens > cp_rank ? (tokens - cp_rank + cp - 1) / cp : 0;
    return {{cp_rank, count, cp}};
  }
  const auto blocks = even_chunks(tokens, 2 * cp);
  const auto& first = blocks[static_cast<std::size_t>(cp_rank)];
  const auto& second = blocks[static_cast<std::size_t>(2 * cp - 1 - cp_rank)];
  return {{first.start, first.count, 1}, {second.start, second.count, 1}};
}

std::int64_t local_tokens(CpSplit split, std::int64_t tokens, int cp, int cp_rank) {
  std::int64_t sum = 0;
  for (const auto& run : split_tokens(split, tokens, cp, cp_rank)) sum += run.count;
  return sum;
}

std::int64_t max_local_tokens(CpSplit split, std::int64_t tokens, int cp) {
  std::int64_t most = 0;
  for (int r = 0; r < cp; ++r) most = std::max(most, local_tokens(split, tokens, cp, r));
  return most;
}

}  // namespace paratwin::build
