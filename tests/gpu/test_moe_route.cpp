// The MoE router kernel (kernels.hpp launch_moe_route) against a float64 host reference: top-k experts by logit per
// token (the lowest expert among equal logits), softmax or sigmoid weights. Logits are drawn from a few values so that
// ties are common; outputs start poisoned so that every id and weight must be written. Rows of up to 512 experts run
// the warp-per-token kernel, longer ones the thread-per-token kernel.
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
      v[at(e)] = bf16_to_float(logits[at(t * experts + e)]);
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
  REQUIRE(cudaMemset(d_ids, 0x7f, at(tokens * topk) * sizeof(int)) == cudaSuccess);        // poison: 0x7f7f7f7f
  REQUIRE(cudaMemset(d_weights, 0xff, at(tokens * topk) * sizeof(float)) == cudaSuccess);  // poison: NaN
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
      i64 wrong_ids = 0, wrong_weights = 0;
      for (std::size_t i = 0; i < want.ids.size(); ++i) {
        if (got.ids[i] != want.ids[i]) ++wrong_ids;
        const float tolerance = 1e-5f + 1e-4f * std::fabs(want.weights[i]);
        if (!(std::fabs(got.weights[i] - want.weights[i]) <= tolerance)) ++wrong_weights;  // NaN (unwritten) fails
      }
      CHECK(wrong_ids == 0);
      CHECK(wrong_weights == 0);
    }
  }
}
