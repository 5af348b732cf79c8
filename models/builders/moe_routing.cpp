#include "models/builders/moe_routing.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "topology/error.hpp"

namespace paratwin::build {
namespace {

// Scales a count measured on `drawn` tokens to `real` tokens, rounding to nearest.
std::int64_t scale(std::int64_t count, std::int64_t drawn, std::int64_t real) {
  if (drawn == 0) return 0;
  return static_cast<std::int64_t>(
      std::llround(static_cast<double>(count) * static_cast<double>(real) / static_cast<double>(drawn)));
}

std::uint64_t mix(std::uint64_t h) {
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 32;
  return h;
}

}  // namespace

std::vector<int> token_experts(std::int64_t num_experts, std::int64_t topk, std::uint64_t seed, int layer,
                               std::int64_t request, std::int64_t position) {
  PARATWIN_ASSERT(topk > 0 && topk <= num_experts, "top-{} of {} experts", topk, num_experts);
  constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15, kLayer = 0x632be59bd9b4e019, kRequest = 0xd6e8feb86659fd93;
  const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };
  std::uint64_t h = mix(seed * kGolden + u(layer) * kLayer);
  h = mix(h ^ (u(request + 1) * kRequest));
  h = mix(h ^ u(position));
  std::vector<int> out;
  while (static_cast<std::int64_t>(out.size()) < topk) {
    h = mix(h + kGolden);
    const auto e = static_cast<int>(h % static_cast<std::uint64_t>(num_experts));
    if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
  }
  return out;
}

ExpertRouting::ExpertRouting(std::int64_t num_experts, std::int64_t experts_per_token, std::uint64_t seed,
                             std::vector<std::vector<TokenKey>> member_tokens)
    : num_experts_(num_experts),
      topk_(experts_per_token),
      rotate_per_layer_(false),
      per_token_(true),
      seed_(seed),
      keys_(std::move(member_tokens)) {
  PARATWIN_ASSERT(num_experts_ > 0 && topk_ > 0 && topk_ <= num_experts_ && !keys_.empty(),
                  "per-token routing of top-{} over {} experts", topk_, num_experts_);
  for (const auto& k : keys_) tokens_.push_back(static_cast<std::int64_t>(k.size()));
}

ExpertRouting::ExpertRouting(std::int64_t num_experts, std::int64_t experts_per_token, const RoutingOptions& options,
                             std::vector<std::int64_t> tokens_per_member)
    : num_experts_(num_experts),
      topk_(experts_per_token),
      rotate_per_layer_(options.load == RoutingLoad::kZipf),
      tokens_(std::move(tokens_per_member)) {
  PARATWIN_ASSERT(num_experts_ > 0 && num_experts_ <= 65535 && topk_ > 0 && topk_ <= num_experts_,
                  "routing of top-{} over {} experts", topk_, num_experts_);
  std::vector<double> cdf(static_cast<std::size_t>(num_experts_));
  double sum = 0;
  for (std::int64_t p = 0; p < num_experts_; ++p) {
    const double w =
        options.load == RoutingLoad::kZipf ? 1.0 / std::pow(static_cast<double>(p + 1), options.zipf_exponent) : 1.0;
    sum += w;
    cdf[static_cast<std::size_t>(p)] = sum;
  }
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> u(0.0, sum);
  draws_.resize(tokens_.size());
  std::vector<char> taken(static_cast<std::size_t>(num_experts_), 0);
  const auto members = static_cast<std::int64_t>(tokens_.size());
  const auto cap = std::max(kMinDrawsPerMember, kMaxDraws / members);
  for (std::size_t m = 0; m < tokens_.size(); ++m) {
    const auto drawn = std::min(tokens_[m], cap);
    auto& out = draws_[m];
    out.reserve(static_cast<std::size_t>(drawn * topk_));
    for (std::int64_t t = 0; t < drawn; ++t) {
      const auto first = out.size();
      while (static_cast<std::int64_t>(out.size() - first) < topk_) {
        const auto p = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
        const auto pick = std::min(p, cdf.size() - 1);
        if (taken[pick]) continue;
        taken[pick] = 1;
        out.push_back(static_cast<std::uint16_t>(pick));
      }
      for (auto i = first; i < out.size(); ++i) taken[out[i]] = 0;
    }
  }
}

std::int64_t ExpertRouting::expert_of(std::int64_t popularity_rank, int layer) const {
  // A per-layer rotation by 37 (coprime to the usual power-of-two expert counts) moves hot experts between ranks.
  if (!rotate_per_layer_) return popularity_rank;
  return (popularity_rank + static_cast<std::int64_t>(layer) * 37) % num_experts_;
}

const MoeLayerPlan& ExpertRouting::plan(int layer) const {
  if (const auto it = cache_.find(layer); it != cache_.end()) return it->second;
  const auto members = static_cast<std::int64_t>(tokens_.size());
  const std::int64_t per_member = (num_experts_ + members - 1) / members;
  const auto members_sz = static_cast<std::size_t>(members);
  MoeLayerPlan plan;
  plan.send_rows.assign(members_sz, std::vector<std::int64_t>(members_sz, 0));
  plan.expert_rows.assign(members_sz, std::vector<std::int64_t>(static_cast<std::size_t>(per_member), 0));
  if (per_token_) {  // exact: one copy per (token, destination rank), one row per (token, expert)
    for (std::size_t src = 0; src < members_sz; ++src) {
      for (const auto& key : keys_[src]) {
        std::vector<char> sent(members_sz, 0);
        for (const int e : token_experts(num_experts_, topk_, seed_, layer, key.request, key.position)) {
          const auto dst = static_cast<std::size_t>(e / per_member);
          ++plan.expert_rows[dst][static_cast<std::size_t>(e % per_member)];
          if (!sent[dst]) {
            sent[dst] = 1;
            ++plan.send_rows[src][dst];
          }
        }
      }
    }
    return cache_.emplace(layer, std::move(plan)).first->second;
  }
  std::vector<std::vector<std::int64_t>> expert_counts(members_sz,
                                                       std::vector<std::int64_t>(static_cast<std::size_t>(per_member)));
  std::vector<std::int64_t> seen(members_sz, -1);
  for (std::size_t src = 0; src < members_sz; ++src) {
    const auto& d = draws_[src];
    const auto drawn = static_cast<std::int64_t>(d.size()) / topk_;
    std::vector<std::int64_t> to_dst(members_sz, 0);
    std::vector<std::vector<std::int64_t>> rows(members_sz,
                                                std::vector<std::int64_t>(static_cast<std::size_t>(per_member)));
    std::fill(seen.begin(), seen.end(), -1);
    for (std::int64_t t = 0; t < drawn; ++t) {
      for (std::int64_t k = 0; k < topk_; ++k) {
        const auto e = expert_of(d[static_cast<std::size_t>(t * topk_ + k)], layer);
        const auto dst = static_cast<std::size_t>(e / per_member);
        ++rows[dst][static_cast<std::size_t>(e % per_member)];
        if (seen[dst] != t) {  // one copy per (token, destination rank), as DeepEP dispatches
          seen[dst] = t;
          ++to_dst[dst];
        }
      }
    }
    for (std::size_t dst = 0; dst < members_sz; ++dst) {
      plan.send_rows[src][dst] = scale(to_dst[dst], drawn, tokens_[src]);
      for (std::size_t e = 0; e < rows[dst].size(); ++e) {
        plan.expert_rows[dst][e] += scale(rows[dst][e], drawn, tokens_[src]);
      }
    }
  }
  return cache_.emplace(layer, std::move(plan)).first->second;
}

std::vector<std::int64_t> ExpertRouting::rows_per_expert(int layer, std::int64_t tokens) const {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(num_experts_), 0);
  if (per_token_) {
    std::int64_t all = 0;
    for (const auto& member : keys_) {
      all += static_cast<std::int64_t>(member.size());
      for (const auto& key : member) {
        for (const int e : token_experts(num_experts_, topk_, seed_, layer, key.request, key.position)) {
          ++counts[static_cast<std::size_t>(e)];
        }
      }
    }
    PARATWIN_ASSERT(all == tokens, "per-token routing holds {} tokens, asked for {}", all, tokens);
    return counts;
  }
  std::int64_t drawn = 0;
  for (const auto& d : draws_) {
    for (const auto p : d) ++counts[static_cast<std::size_t>(expert_of(p, layer))];
    drawn += static_cast<std::int64_t>(d.size()) / topk_;
  }
  for (auto& c : counts) c = scale(c, drawn, tokens);
  return counts;
}

}  // namespace paratwin::build
