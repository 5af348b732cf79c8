#pragma once
/// How one request's tokens are split over the ranks of a CP group, as SGLang's prefill CP does
/// (layers/attention/nsa/utils.py):
///  - round-robin: token i goes to CP rank i mod cp; a rank's tokens are one strided run;
///  - zigzag (in-seq-split): 2·cp near-equal blocks, the first len mod 2cp one token longer; rank r takes blocks r
///    and 2cp−1−r, which balances causal attention.

#include <cstdint>
#include <vector>

#include "models/schedule.hpp"

namespace paratwin::build {

/// A run of query positions: start + i·stride for i < count.
struct TokenRun {
  std::int64_t start = 0;
  std::int64_t count = 0;
  std::int64_t stride = 1;
  [[nodiscard]] std::int64_t last() const { return start + (count - 1) * stride; }
};

/// The runs of one CP rank (one for round-robin, two for zigzag), in the rank's local token order.
[[nodiscard]] std::vector<TokenRun> split_tokens(CpSplit split, std::int64_t tokens, int cp, int cp_rank);

/// Tokens a CP rank holds (the sum over its runs).
[[nodiscard]] std::int64_t local_tokens(CpSplit split, std::int64_t tokens, int cp, int cp_rank);

/// Largest local token count over the CP ranks (SGLang pads every shard to it before gathering).
[[nodiscard]] std::int64_t max_local_tokens(CpSplit split, std::int64_t tokens, int cp);

/// A contiguous chunk [start, start + count) of a prompt.
struct Chunk {
  std::int64_t start = 0;
  std::int64_t count = 0;
};

/// Splits `tokens` into `parts` near-equal contiguous chunks (the first tokens mod parts one longer).
[[nodiscard]] std::vector<Chunk> even_chunks(std::int64_t tokens, int parts);

}  // namespace paratwin::build
