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

TEST_CASE("fp8 experts: --moe-gemm auto runs the fp8 kernel for DeepSeek-V3.2's 8K expert GEMMs",
          "[cuda_plan][moe_gemm]") {
  const AutoFp8MoeGemmRule rule;
  // DeepSeek-V3.2's fp8 expert GEMMs at 8K tokens (~253-256 rows per expert): the kernel measured ahead at both
  // gate_up (n 4096, k 7168) and down (n 7168, k 2048); at 32K (~1,024) behind at both.
  CHECK(auto_fp8_moe_gemm_method(shape(253, 7168, 2048)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(256, 7168, 2048)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(253, 4096, 7168)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(256, 4096, 7168)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(1024, 7168, 2048)) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_fp8_moe_gemm_method(shape(1024, 4096, 7168)) == MoeGemmMethod::kCublasStreams);
  // The band's edges, and a GPU other than Hopper.
  CHECK(auto_fp8_moe_gemm_method(shape(rule.min_rows_per_expert, 7168, 2048)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(rule.max_rows_per_expert, 4096, 7168)) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_fp8_moe_gemm_method(shape(rule.min_rows_per_expert - 1, 7168, 2048)) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_fp8_moe_gemm_method(shape(rule.max_rows_per_expert + 1, 4096, 7168)) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_fp8_moe_gemm_method(shape(256, 7168, 2048, 80)) == MoeGemmMethod::kCublasStreams);
  CHECK(decide_fp8_moe_gemm(MoeGemmChoice::kAuto, shape(256, 7168, 2048)).method == MoeGemmMethod::kHopperKernel);
  CHECK(decide_fp8_moe_gemm(MoeGemmChoice::kAuto, shape(256, 4096, 7168)).method == MoeGemmMethod::kHopperKernel);
  CHECK(decide_fp8_moe_gemm(MoeGemmChoice::kAuto, shape(1024, 4096, 7168)).fallback.empty());  // a choice
  CHECK(decide_fp8_moe_gemm(MoeGemmChoice::kCublasStreams, shape(256, 7168, 2048)).method ==
        MoeGemmMethod::kCublasStreams);
  CHECK(decide_fp8_moe_gemm(MoeGemmChoice::kHopperKernel, shape(2048, 4096, 7168)).method ==
        MoeGemmMethod::kHopperKernel);
  // Off the kernel's tiles (n a multiple of 256, k of 128) or off Hopper: hopper-kernel falls back and says why.
  for (const auto& [n, k, cc, why] : {std::tuple<std::int64_t, std::int64_t, int, const char*>{
                                          384, 2048, 90, "n 384 x k 2048 is off the fp8 kernel's tiles"},
                                      {4096, 192, 90, "n 4096 x k 192 is off the fp8 kernel's tiles"},
                                      {4096, 7168, 100, "the GPU is sm_100"}}) {
    const auto d = decide_fp8_moe_gemm(MoeGemmChoice::kHopperKernel, shape(255, n, k, cc));
    CHECK(d.method == MoeGemmMethod::kCublasStreams);
    CHECK_THAT(d.fallback, Catch::Contains(why));
  }
}

TEST_CASE("the --moe-gemm spellings round-trip and nothing else parses", "[cuda_plan][moe_gemm]") {
  for (const auto choice : {MoeGemmChoice::kAuto, MoeGemmChoice::kCublasStreams, MoeGemmChoice::kHopperKernel}) {
    CHECK(parse_moe_gemm_choice(moe_gemm_choice_name(choice)) == choice);
  }
  CHECK(moe_gemm_choice_name(MoeGemmChoice::kHopperKernel) == "hopper-kernel");
  for (const char* bad : {"", "Auto", "cublas", "triton", "hopper-kernel ", "kernel"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(parse_moe_gemm_choice(bad).has_value());
  }
}

TEST_CASE("the --moe-gemm auto runs the kernel at the zoo's 8K-token MoE shapes but DeepSeek-V3.2's down GEMM",
          "[cuda_plan][moe_gemm]") {
  // gate_up and down of DeepSeek-V3.2 and Qwen3-235B-A22B at 8K tokens (EP 1: ~255 and ~514 rows per expert; EP 8
  // the same rows over fewer experts), where the kernel was measured level with or ahead of the streams but at
  // DeepSeek-V3.2's down GEMM (n 7168).
  for (const double rows : {255.0, 514.0}) {
    INFO(rows << " rows per expert");
    CHECK(auto_moe_gemm_method(shape(rows, 4096, 7168)) == MoeGemmMethod::kHopperKernel);
    CHECK(auto_moe_gemm_method(shape(rows, 3072, 4096)) == MoeGemmMethod::kHopperKernel);
    CHECK(auto_moe_gemm_method(shape(rows, 4096, 1536)) == MoeGemmMethod::kHopperKernel);
    CHECK(auto_moe_gemm_method(shape(rows, 7168, 2048)) == MoeGemmMethod::kCublasStreams);
  }
  // 32K tokens (~1,020-2,060 rows per expert: the streams ahead at every shape), a whole prompt on one expert, and
  // rows per expert below any measured shape (decode): the streams.
  for (const double rows : {1.0, 16.0, 127.0, 769.0, 1024.0, 2063.0, 65536.0}) {
    INFO(rows << " rows per expert");
    CHECK(auto_moe_gemm_method(shape(rows, 4096, 7168)) == MoeGemmMethod::kCublasStreams);
    CHECK(auto_moe_gemm_method(shape(rows, 3072, 4096)) == MoeGemmMethod::kCublasStreams);
  }
  CHECK(decide_moe_gemm(MoeGemmChoice::kAuto, shape(514, 3072, 4096)).method == MoeGemmMethod::kHopperKernel);
  CHECK(decide_moe_gemm(MoeGemmChoice::kAuto, shape(514, 3072, 4096)).fallback.empty());
  CHECK(decide_moe_gemm(MoeGemmChoice::kAuto, shape(514, 7168, 2048)).fallback.empty());  // a choice, not a fallback
}

TEST_CASE("the --moe-gemm auto's rule picks the kernel only on sm_90, on its tiles, within its bounds",
          "[cuda_plan][moe_gemm]") {
  AutoMoeGemmRule rule;
  rule.min_rows_per_expert = 100;
  rule.max_rows_per_expert = 600;
  rule.max_n = 3072;
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096), rule) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_moe_gemm_method(shape(600, 3072, 4096), rule) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_moe_gemm_method(shape(100, 3072, 4096), rule) == MoeGemmMethod::kHopperKernel);
  CHECK(auto_moe_gemm_method(shape(601, 3072, 4096), rule) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(99, 3072, 4096), rule) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(514, 3328, 4096), rule) == MoeGemmMethod::kCublasStreams);  // n above max_n
  CHECK(auto_moe_gemm_method(shape(0, 3072, 4096), rule) == MoeGemmMethod::kCublasStreams);    // nothing to run
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096, 80), rule) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(514, 3072, 4096, 100), rule) == MoeGemmMethod::kCublasStreams);
  CHECK(auto_moe_gemm_method(shape(514, 192, 4096), rule) == MoeGemmMethod::kCublasStreams);  // n off 256
  CHECK(auto_moe_gemm_method(shape(514, 2048, 96), rule) == MoeGemmMethod::kCublasStreams);   // k off 64
}

TEST_CASE("the --moe-gemm hopper-kernel runs the kernel where it can and says why where it cannot",
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
