// The KV-cache write of the attention's RoPE op (launch_scatter_kv): each token's K and V heads, which follow its
// query heads in the QKV row, land bit for bit in its cache row, in the 16-byte packed path and the one-element path
// (head dims or pointers that do not allow packs); rows no token maps to keep their poison.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "backend/cuda/kernels.hpp"

using namespace paratwin::cuda;

namespace {

struct Case {
  const char* what;
  std::int64_t tokens, q_heads, kv_heads, head_dim;
  std::int64_t dst_offset_elems;  // shifts the destination off 16-byte alignment when odd
};

void check_case(const Case& c) {
  INFO(c.what);
  const std::int64_t qkv_row = (c.q_heads + 2 * c.kv_heads) * c.head_dim, kv_row = 2 * c.kv_heads * c.head_dim;
  const std::int64_t cache_rows = 2 * c.tokens + 3;
  std::vector<std::uint16_t> qkv(static_cast<std::size_t>(c.tokens * qkv_row));
  std::uint64_t state = 0x243f6a8885a308d3ULL ^ static_cast<std::uint64_t>(c.tokens * 131 + c.head_dim);
  for (auto& v : qkv) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<std::uint16_t>(state >> 48);
  }
  // Tokens go to every other cache row, in reverse order: rows in between must stay untouched.
  std::vector<int> rows(static_cast<std::size_t>(c.tokens));
  for (std::int64_t t = 0; t < c.tokens; ++t)
    rows[static_cast<std::size_t>(t)] = static_cast<int>(2 * (c.tokens - 1 - t) + 1);
  constexpr std::uint16_t kPoison = 0x7fc1;  // a NaN: rows the kernel must not touch keep it
  const std::size_t dst_elems = static_cast<std::size_t>(cache_rows * kv_row + c.dst_offset_elems);
  std::vector<std::uint16_t> host_dst(dst_elems, kPoison);

  void *d_qkv = nullptr, *d_dst = nullptr, *d_rows = nullptr;
  REQUIRE(cudaMalloc(&d_qkv, qkv.size() * 2) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_dst, dst_elems * 2) == cudaSuccess);
  REQUIRE(cudaMalloc(&d_rows, rows.size() * sizeof(int)) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_qkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_dst, host_dst.data(), dst_elems * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(d_rows, rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
  auto* dst = static_cast<std::uint16_t*>(d_dst) + c.dst_offset_elems;
  launch_scatter_kv(d_qkv, dst, c.tokens, c.q_heads, c.kv_heads, c.head_dim, static_cast<const int*>(d_rows), nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(cudaMemcpy(host_dst.data(), d_dst, dst_elems * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  cudaFree(d_qkv);
  cudaFree(d_dst);
  cudaFree(d_rows);

  std::vector<std::uint16_t> want(dst_elems, kPoison);
  for (std::int64_t t = 0; t < c.tokens; ++t) {
    for (std::int64_t j = 0; j < kv_row; ++j) {
      want[static_cast<std::size_t>(c.dst_offset_elems + std::int64_t{rows[static_cast<std::size_t>(t)]} * kv_row +
                                    j)] = qkv[static_cast<std::size_t>(t * qkv_row + c.q_heads * c.head_dim + j)];
    }
  }
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < dst_elems; ++i)
    if (host_dst[i] != want[i]) ++wrong;
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("the KV-cache write copies each token's K and V heads bit for bit, packed and not", "[gpu][kernels]") {
  const std::vector<Case> cases = {
      {"Llama-3.1-8B heads (packed)", 1000, 32, 8, 128, 0},
      {"GQA, odd token count (packed)", 257, 4, 2, 64, 0},
      {"head dim 36: rows not whole packs", 131, 6, 2, 36, 0},
      {"destination off 16-byte alignment", 77, 4, 2, 64, 1},
      {"one token", 1, 8, 1, 128, 0},
  };
  for (const auto& c : cases) check_case(c);
}
