// attention_gemm (cuBLAS tensor cores) against the backend's own attention kernel (fp32 online softmax) on fresh
// random inputs and poisoned outputs: causal and not, GQA and MHA, round-robin strided queries, a ring-CP key block
// at an offset with the partial form (fp32 output + log-sum-exp), rows that see no key, two requests.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/kernels.hpp"

using namespace paratwin;
using namespace paratwin::cuda;

namespace {

struct Shape {
  const char* what;
  std::int64_t batch, q_tokens, kv_tokens, heads, kv_heads, dim_qk, dim_v;
  std::int64_t q_start = 0, q_stride = 1, kv_start = 0;
  bool causal = true, partial = false;
};

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

struct Device {
  void* ptr = nullptr;
  explicit Device(std::size_t bytes) { REQUIRE(cudaMalloc(&ptr, bytes) == cudaSuccess); }
  ~Device() { cudaFree(ptr); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
};

// Reads back `count` outputs as floats (bf16 or fp32).
std::vector<float> read_back(const void* p, std::size_t count, bool fp32) {
  std::vector<float> out(count);
  if (fp32) {
    REQUIRE(cudaMemcpy(out.data(), p, count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
    return out;
  }
  std::vector<std::uint16_t> raw(count);
  REQUIRE(cudaMemcpy(raw.data(), p, count * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (std::size_t i = 0; i < count; ++i) out[i] = bf16_to_float(raw[i]);
  return out;
}

void check_shape(const Shape& s, cublasHandle_t blas, std::uint64_t seed) {
  INFO(s.what);
  const std::int64_t q_rows = s.batch * s.q_tokens, kv_rows = s.batch * s.kv_tokens;
  const std::int64_t q_cols = s.heads * s.dim_qk, kv_cols = s.kv_heads * (s.dim_qk + s.dim_v);
  const std::int64_t out_cols = s.heads * s.dim_v;
  Device q(static_cast<std::size_t>(q_rows * q_cols * 2)), kv(static_cast<std::size_t>(kv_rows * kv_cols * 2));
  launch_fill_random(q.ptr, false, q_rows, q_cols, 0, nullptr, q_cols, seed, 1.0f, 0.0f, nullptr);
  launch_fill_random(kv.ptr, false, kv_rows, kv_cols, 0, nullptr, kv_cols, seed + 1, 1.0f, 0.0f, nullptr);
  const std::size_t out_elems = static_cast<std::size_t>(q_rows * out_cols);
  const std::size_t out_bytes = out_elems * (s.partial ? 4 : 2);
  const std::size_t lse_elems = static_cast<std::size_t>(q_rows * s.heads);
  Device ref_out(out_bytes), got_out(out_bytes), ref_lse(lse_elems * 4), got_lse(lse_elems * 4);
  // Poison: 0xFF bytes are NaN in bf16 and fp32, so an unwritten element fails the comparison.
  for (void* p : {ref_out.ptr, got_out.ptr}) REQUIRE(cudaMemset(p, 0xFF, out_bytes) == cudaSuccess);
  for (void* p : {ref_lse.ptr, got_lse.ptr}) REQUIRE(cudaMemset(p, 0xFF, lse_elems * 4) == cudaSuccess);

  AttentionArgs a;
  a.q = q.ptr;
  a.k = kv.ptr;
  a.v = static_cast<const char*>(kv.ptr) + s.kv_heads * s.dim_qk * 2;
  a.q_row_stride = q_cols;
  a.k_row_stride = kv_cols;
  a.v_row_stride = kv_cols;
  a.out_row_stride = out_cols;
  a.batch = s.batch;
  a.q_tokens = s.q_tokens;
  a.kv_tokens = s.kv_tokens;
  a.kv_batch_rows = s.kv_tokens;
  a.heads = s.heads;
  a.kv_heads = s.kv_heads;
  a.head_dim_qk = s.dim_qk;
  a.head_dim_v = s.dim_v;
  a.q_start = s.q_start;
  a.q_stride = s.q_stride;
  a.kv_start = s.kv_start;
  a.causal = s.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(s.dim_qk));
  auto ref = a, got = a;
  if (s.partial) {
    ref.out_f32 = static_cast<float*>(ref_out.ptr);
    ref.lse = static_cast<float*>(ref_lse.ptr);
    got.out_f32 = static_cast<float*>(got_out.ptr);
    got.lse = static_cast<float*>(got_lse.ptr);
  } else {
    ref.out = ref_out.ptr;
    got.out = got_out.ptr;
  }
  launch_attention(ref, nullptr);
  Device workspace(kAttentionWorkspaceBytes);
  attention_gemm(got, blas, workspace.ptr, kAttentionWorkspaceBytes, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  const auto r = read_back(ref_out.ptr, out_elems, s.partial);
  const auto g = read_back(got_out.ptr, out_elems, s.partial);
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < out_elems; ++i) {
    REQUIRE(std::isfinite(g[i]));
    diff += (g[i] - r[i]) * static_cast<double>(g[i] - r[i]);
    norm += r[i] * static_cast<double>(r[i]);
  }
  const double rel_l2 = std::sqrt(diff / std::max(norm, 1e-30));
  INFO("relative L2 " << rel_l2);
  CHECK(rel_l2 < 1e-2);
  if (s.partial) {
    const auto rl = read_back(ref_lse.ptr, lse_elems, true);
    const auto gl = read_back(got_lse.ptr, lse_elems, true);
    for (std::size_t i = 0; i < lse_elems; ++i) {
      if (std::isinf(rl[i])) {
        CHECK(std::isinf(gl[i]));
      } else {
        REQUIRE(std::abs(gl[i] - rl[i]) < 2e-2f);
      }
    }
  }
}

}  // namespace

TEST_CASE("attention on the tensor cores equals the reference kernel on every CP shape", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  cublasHandle_t blas = nullptr;
  REQUIRE(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS);
  const Shape shapes[] = {
      {"causal GQA, two requests, ragged 300 tokens", 2, 300, 300, 8, 2, 64, 64},
      {"non-causal MHA, MLA head dims 192/128", 1, 257, 700, 4, 4, 192, 128, 0, 1, 0, false},
      {"round-robin CP rank 1 of 2: strided queries over the gathered prefix", 1, 300, 600, 8, 2, 128, 128, 1, 2},
      {"a CP chunk at an offset: queries 1024..1535 over keys 0..1535", 1, 512, 1536, 8, 8, 64, 64, 1024},
      {"ring block ahead of some queries: partial output and log-sum-exp", 2, 200, 150, 4, 2, 64, 64, 100, 1, 180,
       true, true},
      {"MQA with 1100 queries (three query blocks)", 1, 1100, 1100, 8, 1, 128, 128},
  };
  std::uint64_t seed = 11;
  for (const auto& s : shapes) check_shape(s, blas, seed += 7);
  cublasDestroy(blas);
}
