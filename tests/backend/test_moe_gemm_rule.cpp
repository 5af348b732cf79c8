// The MoE expert GEMMs' launch choice: the --moe-gemm spellings (backend/moe_gemm_choice.hpp) and the per-op decision
// with --moe-gemm auto's per-shape rule (backend/cuda_plan/moe_gemm_rule.hpp).
#include <catch2/catch.hpp>
#include <string>
#include <tuple>

#include "backend/cuda_plan/moe_gemm_rule.hpp"
#include "backend/moe_gemm_choice.hpp"

using namespace paratwin;
using namespace paratwin::cuda_plan;

namespace {

MoeGemmShape shape(double rows_per_expert, std::int64_t n, std::int64_t k, int compute_capability = 90) {
  MoeGemmShape s;
  s.rows_per_expert = rows_per_expert;
  s.n = n;
  s.k = k;
  s.compute_capability = compute_capability;
  return s;
}

}  // namespace

TEST_CASE("--moe-gemm spellings round-trip and nothing else parses", "[cuda_plan][moe_gemm]") {
  for (const auto choice : {MoeGemmChoice::kAuto, MoeGemmChoice::kCublasStreams, MoeGemmChoice::kHopperKernel}) {
    CHECK(parse_moe_gemm_choice(moe_gemm_choice_name(choice)) == choice);
  }
  CHECK(moe_gemm_choice_name(MoeGemmChoice::kHopperKernel) == "hopper-kernel");
  for (const char* bad : {"", "Auto", "cublas", "triton", "hopper-kernel ", "kernel"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_moe_gemm_choice(bad).has_value());
  }
}

TEST_CASE("--moe-gemm auto runs cuBLAS streams at every zoo MoE shape until measurements move its threshold",
          "[cuda_plan][moe_gemm]") {
  // gate_up and down of DeepSeek-V3.2 and the two Qwen3 MoE models, from 1 row per expert to 32K tokens at EP 1.
  for (const auto& [n, k] : {std::tuple<std::int64_t, std::int64_t>{4096, 7168},
                             {7168, 2048},
                             {3072, 4096},
                             {4096, 1536},
                             {1536, 2048},
                             {2048, 768}}) {
    for (const double rows : {1.0, 16.0, 255.0, 514.0, 1024.0, 2063.0, 65536.0}) {
      INFO(rows << " rows per expert, n " << n << ", k " << k);
      CHECK(auto_moe_gemm_method(shape(rows, n, k)) == MoeGemmMethod::kCublasStreams);
      CHECK(decide_moe_gemm(MoeGemmChoice::kAuto, shape(rows, n, k)).fallback.empty());
    }
  }
}

TEST_CASE("--moe-gemm auto's rule picks the kernel only on sm_90, on its tiles, up to its rows threshold",
          "[cuda_plan][moe_gemm]") {
  constexpr double kThreshold = 600;  // a threshold as the lead may set it: the 8K shapes, not the 32K ones
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096), kThreshold) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_moe_gemm_method(shape(600, 3072, 4096), kThreshold) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_moe_gemm_method(shape(601, 3072, 4096), kThreshold) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(0, 3072, 4096), kThreshold) == MoeGemmMethod::kCublasStreams);  // nothing to run
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096, 80), kThreshold) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096, 100), kThreshold) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(514, 192, 4096), kThreshold) == MoeGemmMethod::kCublasStreams);  // n off 256
  CHECK(auto_moe_gemm_method(shape(514, 4096, 96), kThreshold) == MoeGemmMethod::kCublasStreams);   // k off 64
}

TEST_CASE("--moe-gemm hopper-kernel runs the kernel where it can and says why where it cannot",
          "[cuda_plan][moe_gemm]") {
  const auto kernel = decide_moe_gemm(MoeGemmChoice::kHopperKernel, shape(255, 7168, 2048));
  CHECK(kernel.method == MoeGemmMethod::kHopperKernel);
  CHECK(kernel.fallback.empty());

  const auto ampere = decide_moe_gemm(MoeGemmChoice::kHopperKernel, shape(255, 7168, 2048, 80));
  CHECK(ampere.method == MoeGemmMethod::kCublasStreams);
  CHECK_THAT(ampere.fallback, Catch::Contains("sm_80") && Catch::Contains("sm_90"));

  const auto narrow = decide_moe_gemm(MoeGemmChoice::kHopperKernel, shape(255, 192, 160));
  CHECK(narrow.method == MoeGemmMethod::kCublasStreams);
  CHECK_THAT(narrow.fallback, Catch::Contains("n 192 x k 160") && Catch::Contains("multiple of 256"));

  const auto streams = decide_moe_gemm(MoeGemmChoice::kCublasStreams, shape(255, 7168, 2048));
  CHECK(streams.method == MoeGemmMethod::kCublasStreams);
  CHECK(streams.fallback.empty());
  CHECK(hopper_kernel_unsupported_reason(shape(1, 256, 64)).empty());
}
