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
