// The MoE router kernel (kernels.hpp launch_moe_route) against a float64 host reference: top-k experts by logit per
// token (the lowest expert among equal logits, NaN ranked as -inf), softmax or sigmoid weights. Logits are drawn from
// a few values so that ties are common; outputs start poisoned so that every id and weight must be written. Rows of up
// to 512 experts run the warp-per-token kernel, longer ones the thread-per-token kernel.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cuda/kernels.hpp"

using paratwin::cuda::launch_moe_route;

namespace {

using i64 = std::int64_t;

std::size_t at(i64 i) {
  return static_cast<std::size_t>(i);
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::uint16_t float_to_bf16(float f) {  // exact for the quarter-integers drawn below
  std::uint32_t bits = 0;
  std::memcpy(&bits, &f, sizeof f);
  return static_cast<std::uint16_t>(bits >> 16);
}

// The router's reading of a logit (kernels.hpp): NaN counts as -inf.
double route_logit(std::uint16_t b) {
  const double v = bf16_to_float(b);
  return std::isnan(v) ? -HUGE_VAL : v;
}

struct Route {
  std::vector<int> ids;
  std::vector<float> weights;
};

Route host_route(const std::vector<std::uint16_t>& logits, i64 tokens, i64 experts, i64 topk, bool sigmoid) {
  Route r{std::vector<int>(at(tokens * topk)), std::vector<float>(at(tokens * topk))};
  for (i64 t = 0; t < tokens; ++t) {
    std::vector<double> v(at(experts));
    double mx = -1e300;
    for (i64 e = 0; e < experts; ++e) {
      v[at(e)] = route_logit(logits[at(t * experts + e)]);
      mx = std::max(mx, v[at(e)]);
    }
    double denom = 0;
    for (const double x : v) denom += std::exp(x - mx);
    std::vector<bool> taken(at(experts), false);
    for (i64 k = 0; k < topk; ++k) {
      i64 best = -1;
      for (i64 e = 0; e < experts; ++e) {
        if (!taken[at(e)] && (best < 0 || v[at(e)] > v[at(best)])) best = e;
      }
      const auto slot = at(t * topk + k);
      r.ids[slot] = static_cast<int>(best);
      if (best < 0) {
        r.weights[slot] = 0.0f;
        continue;
      }
      taken[at(best)] = true;
      const double x = v[at(best)];
      r.weights[slot] = static_cast<float>(sigmoid ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x - mx) / denom);
    }
  }
  return r;
}

Route device_route(const std::vector<std::uint16_t>& logits, i64 tokens, i64 experts, i64 topk, bool sigmoid) {
  void* d_logits = nullptr;
  int* d_ids = nullptr;
  float* d_weights = nullptr;
  REQUIRE(cudaMalloc(&d_logits, logits.size() * 2) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_ids, at(tokens * topk) * sizeof(int)) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_weights, at(tokens * topk) * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_logits, logits.data(), logits.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(d_ids, 0x7f, at(tokens * topk) * sizeof(int)) == cudaSuccess);  // poison: 0x7f7f7f7f
  // Poison 3.4e38: no weight (a NaN one of a row with no finite logit included) equals it.
  REQUIRE(cudaMemset(d_weights, 0x7f, at(tokens * topk) * sizeof(float)) == cudaSuccess);
  launch_moe_route(d_logits, d_ids, d_weights, tokens, experts, topk, sigmoid, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  Route r{std::vector<int>(at(tokens * topk)), std::vector<float>(at(tokens * topk))};
  REQUIRE(cudaMemcpy(r.ids.data(), d_ids, r.ids.size() * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(r.weights.data(), d_weights, r.weights.size() * sizeof(float), cudaMemcpyDeviceToHost) ==
          cudaSuccess);
  cudaFree(d_logits);
  cudaFree(d_ids);
  cudaFree(d_weights);
  return r;
}

struct Mismatches {
  i64 ids = 0, weights = 0;
};

// Slots where the kernel's id differs from the reference's, and weights off by more than the fp32 fast-exp error (NaN
// matches NaN only: the softmax weights of a row with no finite logit).
Mismatches compare(const Route& want, const Route& got) {
  Mismatches m;
  for (std::size_t i = 0; i < want.ids.size(); ++i) {
    if (got.ids[i] != want.ids[i]) ++m.ids;
    const float tolerance = 1e-5f + 1e-4f * std::fabs(want.weights[i]);
    const bool same = std::isnan(want.weights[i]) ? std::isnan(got.weights[i])
                                                  : std::fabs(got.weights[i] - want.weights[i]) <= tolerance;
    if (!same) ++m.weights;
  }
  return m;
}

}  // namespace

TEST_CASE("the MoE router picks the top-k experts by logit, lowest expert first among ties, with their weights",
          "[gpu][moe]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  REQUIRE(devices >= 1);
  std::mt19937_64 rng(20261129);
  std::uniform_int_distribution<int> quarter(-12, 12);  // logits in steps of 0.25: many equal values per row
  struct Case {
    i64 tokens, experts, topk;
  };
  const Case cases[] = {{1, 1, 2},      {7, 8, 2},     {33, 31, 8},   {1000, 64, 8}, {257, 100, 6},
                        {1000, 128, 8}, {513, 256, 8}, {64, 512, 32}, {100, 513, 8}, {50, 600, 8}};
  for (const auto& c : cases) {
    for (const bool sigmoid : {false, true}) {
      INFO(c.tokens << " tokens x " << c.experts << " experts, top-" << c.topk
                    << (sigmoid ? ", sigmoid" : ", softmax"));
      std::vector<std::uint16_t> logits(at(c.tokens * c.experts));
      for (auto& x : logits) x = float_to_bf16(0.25f * static_cast<float>(quarter(rng)));
      const auto want = host_route(logits, c.tokens, c.experts, c.topk, sigmoid);
      const auto got = device_route(logits, c.tokens, c.experts, c.topk, sigmoid);
      const auto wrong = compare(want, got);
      CHECK(wrong.ids == 0);
      CHECK(wrong.weights == 0);
    }
  }
}

TEST_CASE("the MoE router ranks NaN logits as -inf on both kernels, rows of all NaN included", "[gpu][moe]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  REQUIRE(devices >= 1);
  const std::uint16_t quiet_nan = 0x7FC0, negative_nan = 0xFFC0, signalling_nan = 0x7F81, minus_inf = 0xFF80;
  const std::uint16_t one = float_to_bf16(1.0f);
  SECTION("the row seen to split the warp: [NaN, 1.0], top-2") {
    for (const i64 experts : {2, 600}) {  // the warp kernel, and the thread-per-token kernel on a longer row
      INFO(experts << " experts");
      std::vector<std::uint16_t> row(at(experts), minus_inf);
      row[0] = quiet_nan;
      row[1] = one;
      const auto softmax = device_route(row, 1, experts, 2, false);
      CHECK(softmax.ids == std::vector<int>{1, 0});
      CHECK(std::fabs(softmax.weights[0] - 1.0f) <= 1e-6f);
      CHECK(softmax.weights[1] == 0.0f);
      const auto sigmoid = device_route(row, 1, experts, 2, true);
      CHECK(sigmoid.ids == std::vector<int>{1, 0});
      CHECK(std::fabs(sigmoid.weights[0] - 0.7310586f) <= 1e-5f);
      CHECK(sigmoid.weights[1] == 0.0f);
    }
  }
  SECTION("random rows with NaN and -inf logits, some with fewer finite logits than topk, some with none") {
    std::mt19937_64 rng(20261130);
    std::uniform_int_distribution<int> quarter(-12, 12), kind(0, 9);
    const std::uint16_t specials[] = {quiet_nan, negative_nan, signalling_nan, minus_inf};
    struct Case {
      i64 tokens, experts, topk;
    };
    const Case cases[] = {{64, 8, 8}, {200, 64, 8}, {300, 256, 8}, {64, 512, 32}, {100, 600, 8}};
    for (const auto& c : cases) {
      for (const bool sigmoid : {false, true}) {
        INFO(c.tokens << " tokens x " << c.experts << " experts, top-" << c.topk
                      << (sigmoid ? ", sigmoid" : ", softmax"));
        std::vector<std::uint16_t> logits(at(c.tokens * c.experts));
        for (i64 t = 0; t < c.tokens; ++t) {
          // Row t: every logit special (t % 4 == 0: all NaN or a NaN/-inf mix), nearly all (t % 4 == 1: topk − 1
          // finite ones at most), or 30 % special.
          for (i64 e = 0; e < c.experts; ++e) {
            const bool special = t % 4 == 0 || (t % 4 == 1 && e >= c.topk - 1) || (t % 4 >= 2 && kind(rng) < 3);
            const std::uint16_t pick = t % 8 == 0 ? quiet_nan : specials[at(kind(rng) % 4)];
            logits[at(t * c.experts + e)] = special ? pick : float_to_bf16(0.25f * static_cast<float>(quarter(rng)));
          }
        }
        const auto want = host_route(logits, c.tokens, c.experts, c.topk, sigmoid);
        const auto got = device_route(logits, c.tokens, c.experts, c.topk, sigmoid);
        const auto wrong = compare(want, got);
        CHECK(wrong.ids == 0);
        CHECK(wrong.weights == 0);
        i64 rows_with_bad_ids = 0;  // every slot a valid expert, distinct within the row (the rule, not the reference)
        for (i64 t = 0; t < c.tokens; ++t) {
          std::vector<bool> seen(at(c.experts), false);
          bool ok = true;
          for (i64 k = 0; k < c.topk; ++k) {
            const int id = got.ids[at(t * c.topk + k)];
            ok = ok && id >= 0 && id < c.experts && !seen[at(id)];
            if (ok) seen[at(id)] = true;
          }
          if (!ok) ++rows_with_bad_ids;
        }
        CHECK(rows_with_bad_ids == 0);
        for (i64 k = 0; k < c.topk; ++k) {  // row 0 is all NaN: experts 0, 1, ... in order
          CHECK(got.ids[at(k)] == k);
          CHECK((sigmoid ? got.weights[at(k)] == 0.0f : std::isnan(got.weights[at(k)])));
        }
      }
    }
  }
}
