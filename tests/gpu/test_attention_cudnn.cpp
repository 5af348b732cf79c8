// cuDNN's fused flash attention (attention_cudnn.hpp) against the backend's reference kernel on every shape it must
// take: causal and not, GQA/MQA/MHA, head dims 128/128 and MLA's 192/128, two requests, CP chunks at an offset (the
// causal diagonal shifted), ring-CP key blocks in the partial form (fp32 output + log-sum-exp) behind, across and
// ahead of the queries (rows that see no key: zero output, −inf log-sum-exp), and round-robin CP's strided positions as
// diagonal calls (attention_strided.hpp). Shapes it cannot take must fall back (attention_dispatch.hpp) and still give
// the reference result.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "tests/gpu/attention_check.hpp"

using namespace paratwin;
using namespace paratwin::cuda;
using paratwin::cuda::attention_check::Shape;

TEST_CASE("fused cuDNN attention takes every contiguous CP shape and equals the reference kernel", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  INFO("cuDNN " << CudnnAttention::library_version());
  CudnnAttention cudnn;
  const Shape shapes[] = {
      {"causal GQA 128/128, two requests, ragged 300 tokens", 2, 300, 300, 8, 2, 128, 128},
      {"causal MLA prefill, head dims 192/128", 1, 384, 384, 4, 4, 192, 128},
      {"non-causal MHA, MLA head dims 192/128", 1, 257, 700, 4, 4, 192, 128, 0, 1, 0, false},
      {"a CP chunk at an offset: queries 1024..1535 over keys 0..1535", 1, 512, 1536, 8, 8, 128, 128, 1024},
      {"a CP chunk with later keys: queries 500..755 over keys 0..1023", 1, 256, 1024, 8, 2, 128, 128, 500},
      {"MQA with 1100 queries", 1, 1100, 1100, 8, 1, 128, 128},
      {"ring diagonal block: partial output and log-sum-exp", 1, 256, 256, 4, 2, 128, 128, 512, 1, 512, true, true},
      {"ring block ahead of some queries: rows that see no key", 2, 200, 150, 4, 2, 128, 128, 100, 1, 180, true, true},
      {"ring block behind every query: all keys visible", 1, 128, 512, 4, 2, 128, 128, 1000, 1, 0, true, true},
      {"ring block ahead of every query: no query sees a key", 1, 64, 128, 4, 2, 128, 128, 0, 1, 600, true, true},
  };
  std::uint64_t seed = 101;
  for (const auto& s : shapes) {
    attention_check::check_against_reference(s, seed += 7, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
      const bool fused = cudnn.run(a, ws, bytes, nullptr);
      INFO("declined: " << cudnn.declined_reason());
      REQUIRE(fused);
    });
  }
}

TEST_CASE("fused cuDNN attention builds one plan per shape and reuses it", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  CudnnAttention cudnn;
  const Shape s{"causal GQA, 512 tokens", 1, 512, 512, 8, 2, 128, 128};
  const auto run = [&](const AttentionArgs& a, void* ws, std::size_t bytes) { REQUIRE(cudnn.run(a, ws, bytes, nullptr)); };
  attention_check::check_against_reference(s, 7, run);
  attention_check::check_against_reference(s, 8, run);  // new buffers, same shape
  CHECK(cudnn.cached_plans() == 1);
}

TEST_CASE("fused cuDNN attention splits the heads into KV-head groups when the workspace is small", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  CudnnAttention cudnn;
  // The partial form stages 2 · 300 · 8 · 128 bf16 outputs (1.2 MB): with 1 MiB of workspace the heads run as two
  // calls of one KV-head group (4 query heads) each.
  const Shape s{"ring diagonal block, two requests, 1 MiB of workspace", 2, 300, 300, 8, 2, 128, 128, 0, 1, 0, true,
                true};
  attention_check::check_against_reference(s, 401, [&](const AttentionArgs& a, void* ws, std::size_t) {
    const bool fused = cudnn.run(a, ws, std::size_t{1} << 20, nullptr);
    INFO("declined: " << cudnn.declined_reason());
    REQUIRE(fused);
  });
  CHECK(cudnn.cached_plans() == 2);  // all heads (too large), then one KV-head group
}

// GPU 0 with both attention paths: cuDNN's fused one and cuBLAS for the unfused fallback.
struct AttentionPaths {
  AttentionPaths() {
    REQUIRE(cuda_device_count() >= 1);
    REQUIRE(cudaSetDevice(0) == cudaSuccess);
    cudnn = std::make_unique<CudnnAttention>();
    REQUIRE(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS);
  }
  ~AttentionPaths() { cublasDestroy(blas); }
  AttentionPaths(const AttentionPaths&) = delete;
  AttentionPaths& operator=(const AttentionPaths&) = delete;
  AttentionPath dispatch(const AttentionArgs& a, void* workspace, std::size_t bytes) const {
    return dispatch_attention(a, {cudnn.get(), blas, workspace, bytes}, nullptr);
  }
  std::unique_ptr<CudnnAttention> cudnn;
  cublasHandle_t blas = nullptr;
};

TEST_CASE("attention falls back to cuBLAS where the fused path cannot compute it exactly", "[gpu]") {
  const AttentionPaths paths;
  const Shape shapes[] = {
      {"head dim 36: rows of partial 16-byte vectors", 1, 200, 200, 4, 2, 36, 36},
      {"strided queries over contiguous keys in the partial form", 1, 150, 300, 4, 2, 128, 128, 1, 2, 0, true, true},
  };
  std::uint64_t seed = 301;
  for (const auto& s : shapes) {
    attention_check::check_against_reference(s, seed += 7, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
      CHECK(paths.dispatch(a, ws, bytes) == AttentionPath::kCublas);
      CHECK(!paths.cudnn->declined_reason().empty());
    });
  }
}

TEST_CASE("causal attention over round-robin positions runs fused, as diagonal calls, and equals the reference",
          "[gpu]") {
  const AttentionPaths paths;
  // All-gather CP with the round-robin split: a rank's queries at positions rank + i·cp, the gathered keys in position
  // order (one partial call per residue class of the keys, merged); a ring step: the owner's keys at the same stride.
  const Shape shapes[] = {
      {"all-gather CP rank 0 of 2: queries 0, 2, 4, ... over 600 keys", 1, 300, 600, 8, 2, 128, 128, 0, 2},
      {"all-gather CP rank 1 of 2: queries 1, 3, 5, ... over 600 keys", 1, 300, 600, 8, 2, 128, 128, 1, 2},
      {"all-gather CP rank 3 of 4, two requests, 403 keys (ragged classes), MHA", 2, 100, 403, 4, 4, 128, 128, 3, 4},
      {"all-gather CP rank 2 of 4, MLA head dims 192/128", 1, 128, 512, 4, 4, 192, 128, 2, 4},
      {"ring step, rank 0's queries over rank 1's keys (stride 2)", 1, 256, 256, 4, 2, 128, 128, 0, 2, 1, true, true,
       2},
      {"ring step, rank 1's queries over rank 0's keys (stride 2)", 2, 200, 200, 4, 2, 128, 128, 1, 2, 0, true, true,
       2},
  };
  std::uint64_t seed = 701;
  for (const auto& s : shapes) {
    attention_check::check_against_reference(s, seed += 7, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
      INFO("declined: " << paths.cudnn->declined_reason());
      CHECK(paths.dispatch(a, ws, bytes) == AttentionPath::kCudnnFused);
    });
  }
}

TEST_CASE("attention calls with one kernel key share their cuDNN plan, and a shifted causal mask is another key", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  CudnnAttention cudnn;
  const Shape first{"micro-batch 0: queries 0..255 over keys 0..255", 1, 256, 256, 8, 2, 128, 128};
  const Shape later{"micro-batch 1: queries 256..511 over keys 0..511", 1, 256, 512, 8, 2, 128, 128, 256};
  std::string first_key;
  attention_check::check_against_reference(first, 601, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
    first_key = attention_kernel_key(a);
    AttentionArgs moved = a;  // other buffers, as another layer's call: the same key
    moved.q = static_cast<const char*>(a.q) + 4096;
    moved.out = static_cast<char*>(a.out) + 4096;
    moved.scale = 2 * a.scale;
    CHECK(attention_kernel_key(moved) == first_key);
    moved.q = static_cast<const char*>(a.q) + 2;  // no longer 16-byte aligned: the fused path declines it
    CHECK(attention_kernel_key(moved) != first_key);
    REQUIRE(cudnn.run(a, ws, bytes, nullptr));
  });
  attention_check::check_against_reference(first, 602, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
    CHECK(attention_kernel_key(a) == first_key);  // new buffers, same shape
    REQUIRE(cudnn.run(a, ws, bytes, nullptr));
  });
  CHECK(cudnn.cached_plans() == 1);
  attention_check::check_against_reference(later, 603, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
    CHECK(attention_kernel_key(a) != first_key);
    REQUIRE(cudnn.run(a, ws, bytes, nullptr));
  });
  CHECK(cudnn.cached_plans() == 2);
}
