#pragma once
/// Synthetic expert routing: which experts the tokens of each EP-group member pick, drawn once from a seeded uniform
/// or Zipf expert popularity. Under Zipf the popularity is re-mapped per layer so that hot experts land on different
/// ranks in different layers; uniform routing keeps one pattern for every layer (rotating it would change nothing
/// but the sampling noise, and identical layers let the simulator reuse them). Draws are capped (kMaxDraws tokens per
/// EP group, at least kMinDrawsPerMember per member) and counts scaled to the real token counts, so building a schedule
/// stays fast at 128K tokens and 256-way EP. Every EP group draws the same pattern.

#include <compare>
#include <cstdint>
#include <map>
#include <vector>

#include "models/schedule_options.hpp"

namespace paratwin::build {

/// Rows moved and computed by one MoE layer of one EP group.
struct MoeLayerPlan {
  std::vector<std::vector<std::int64_t>> send_rows;    ///< [src][dst]: tokens src sends to dst (one per token and rank)
  std::vector<std::vector<std::int64_t>> expert_rows;  ///< [member][local expert]: (token, expert) rows it computes
};

/// A token as per-token routing sees it; the padding rows of a gather are (−1, their row in the gathered tensor).
struct TokenKey {
  std::int64_t request = 0, position = 0;
  friend auto operator<=>(const TokenKey&, const TokenKey&) = default;
};

/// RoutingLoad::kPerToken: the `topk` distinct experts of token (request, position) in `layer`, a seeded hash (the
/// same on every layout; the CUDA backend routes real tensors by it for the numerical check).
[[nodiscard]] std::vector<int> token_experts(std::int64_t num_experts, std::int64_t topk, std::uint64_t seed, int layer,
                                             std::int64_t request, std::int64_t position);

class ExpertRouting {
 public:
  static constexpr std::int64_t kMaxDraws = 32768;
  static constexpr std::int64_t kMinDrawsPerMember = 256;

  /// `tokens_per_member`: tokens each EP-group member routes (EP size = its length).
  ExpertRouting(std::int64_t num_experts, std::int64_t experts_per_token, const RoutingOptions& options,
                std::vector<std::int64_t> tokens_per_member);

  /// RoutingLoad::kPerToken: the exact plan of the tokens each EP-group member routes (`member_tokens`; in gather mode
  /// one member holding every gathered row, padding included).
  ExpertRouting(std::int64_t num_experts, std::int64_t experts_per_token, std::uint64_t seed,
                std::vector<std::vector<TokenKey>> member_tokens);

  /// The plan of `layer` (deterministic; computed on first use and cached).
  [[nodiscard]] const MoeLayerPlan& plan(int layer) const;
  /// Rows per expert when `tokens` tokens are all routed on one rank (gather mode), for `layer`.
  [[nodiscard]] std::vector<std::int64_t> rows_per_expert(int layer, std::int64_t tokens) const;

 private:
  [[nodiscard]] std::int64_t expert_of(std::int64_t popularity_rank, int layer) const;

  std::int64_t num_experts_, topk_;
  bool rotate_per_layer_;
  std::vector<std::int64_t> tokens_;
  bool per_token_ = false;
  std::uint64_t seed_ = 0;
  std::vector<std::vector<TokenKey>> keys_;  // per-token routing: the members' tokens
  // draws_[member] holds sampled tokens × topk popularity ranks (distinct within a token).
  std::vector<std::vector<std::uint16_t>> draws_;
  mutable std::map<int, MoeLayerPlan> cache_;  // node-based: references stay valid
};

}  // namespace paratwin::build
