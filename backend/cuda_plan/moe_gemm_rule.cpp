#include "backend/cuda_plan/moe_gemm_rule.hpp"

#include <fmt/format.h>

#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda_plan {

std::string_view moe_gemm_method_name(MoeGemmMethod method) {
  return method == MoeGemmMethod::kHopperKernel ? "Hopper kernel" : "cuBLAS streams";
}

std::string hopper_kernel_unsupported_reason(const MoeGemmShape& shape) {
  if (shape.compute_capability != kHopperKernelComputeCapability) {
    return fmt::format("the GPU is sm_{}; the kernel runs on sm_{} only", shape.compute_capability,
                       kHopperKernelComputeCapability);
  }
  if (!grouped_kernel_supports(shape.n, shape.k)) {
    return fmt::format("n {} x k {} is off the kernel's tiles (n a multiple of {}, k of {})", shape.n, shape.k,
                       kGroupedTileCols, kGroupedTileDepth);
  }
  return {};
}

MoeGemmMethod auto_moe_gemm_method(const MoeGemmShape& shape, const AutoMoeGemmRule& rule) {
  const bool kernel = hopper_kernel_unsupported_reason(shape).empty() &&
                      shape.rows_per_expert >= rule.min_rows_per_expert &&
                      shape.rows_per_expert <= rule.max_rows_per_expert && shape.n <= rule.max_n;
  return kernel ? MoeGemmMethod::kHopperKernel : MoeGemmMethod::kCublasStreams;
}

std::string fp8_kernel_unsupported_reason(const MoeGemmShape& shape) {
  constexpr std::int64_t kScaleBlock = 128;  // fp8_gemm.hpp's block scales: the kernel's k-block
  if (shape.compute_capability != kHopperKernelComputeCapability) {
    return fmt::format("the GPU is sm_{}; the fp8 kernel runs on sm_{} only", shape.compute_capability,
                       kHopperKernelComputeCapability);
  }
  if (shape.n < kGroupedTileCols || shape.n % kGroupedTileCols != 0 || shape.k < kScaleBlock ||
      shape.k % kScaleBlock != 0) {
    return fmt::format("n {} x k {} is off the fp8 kernel's tiles (n a multiple of {}, k of {})", shape.n, shape.k,
                       kGroupedTileCols, kScaleBlock);
  }
  return {};
}

MoeGemmMethod auto_fp8_moe_gemm_method(const MoeGemmShape& shape, const AutoFp8MoeGemmRule& rule) {
  const bool kernel = fp8_kernel_unsupported_reason(shape).empty() &&
                      shape.rows_per_expert >= rule.min_rows_per_expert &&
                      shape.rows_per_expert <= rule.max_rows_per_expert && shape.k <= rule.max_k;
  return kernel ? MoeGemmMethod::kHopperKernel : MoeGemmMethod::kCublasStreams;
}

MoeGemmDecision decide_fp8_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape) {
  switch (choice) {
    case MoeGemmChoice::kCublasStreams:
      return {};
    case MoeGemmChoice::kAuto:
      return {auto_fp8_moe_gemm_method(shape), {}};
    case MoeGemmChoice::kHopperKernel:
      break;
  }
  auto why = fp8_kernel_unsupported_reason(shape);
  if (why.empty()) return {MoeGemmMethod::kHopperKernel, {}};
  return {MoeGemmMethod::kCublasStreams, std::move(why)};
}

MoeGemmDecision decide_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape) {
  switch (choice) {
    case MoeGemmChoice::kCublasStreams:
      return {};
    case MoeGemmChoice::kAuto:
      return {auto_moe_gemm_method(shape), {}};
    case MoeGemmChoice::kHopperKernel:
      break;
  }
  auto why = hopper_kernel_unsupported_reason(shape);
  if (why.empty()) return {MoeGemmMethod::kHopperKernel, {}};
  return {MoeGemmMethod::kCublasStreams, std::move(why)};
}

}  // namespace paratwin::cuda_plan
