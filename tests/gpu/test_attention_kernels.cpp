// attention_gemm (cuBLAS tensor cores) against the backend's own attention kernel (fp32 online softmax) on fresh
// random inputs and poisoned outputs: causal and not, GQA and MHA, round-robin strided queries, a ring-CP key block
// at an offset with the partial form (fp32 output + log-sum-exp), rows that see no key, two requests.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "tests/gpu/attention_check.hpp"

using namespace paratwin;
using namespace paratwin::cuda;
using paratwin::cuda::attention_check::Shape;

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
  for (const auto& s : shapes) {
    attention_check::check_against_reference(s, seed += 7, [&](const AttentionArgs& a, void* ws, std::size_t bytes) {
      attention_gemm(a, blas, ws, bytes, nullptr);
    });
  }
  cublasDestroy(blas);
}
