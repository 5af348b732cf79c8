#include "backend/cuda_plan/moe_gemm_rule.hpp"

#include <fmt/format.h>

#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda_plan {

namespace {

// Both kernels are built for sm_90a only.
std::string wrong_gpu_reason(const MoeGemmShape& shape, std::string_view kernel) {
  if (shape.compute_capability == kHopperKernelComputeCapability) return {};
  return fmt::format("the GPU is sm_{}; the {} runs on sm_{} only", shape.compute_capability, kernel,
                     kHopperKernelComputeCapability);
}

// --moe-gemm's choice for one kernel: `rule_pick` is what auto's rule picks at the shape, `why_not` why the kernel
// cannot run it (empty: it can).
MoeGemmDecision resolve(MoeGemmChoice choice, MoeGemmMethod rule_pick, std::string why_not) {
  switch (choice) {
    case MoeGemmChoice::kCublasStreams:
      return {};
    case MoeGemmChoice::kAuto:
      return {rule_pick, {}};
    case MoeGemmChoice::kHopperKernel:
      break;
  }
  if (why_not.empty()) return {MoeGemmMethod::kHopperKernel, {}};
  return {MoeGemmMethod::kCublasStreams, std::move(why_not)};
}

}  // namespace

std::string_view moe_gemm_method_name(MoeGemmMethod method) {
  return method == MoeGemmMethod::kHopperKernel ? "Hopper kernel" : "cuBLAS streams";
}

std::string hopper_kernel_unsupported_reason(const MoeGemmShape& shape) {
  if (auto why = wrong_gpu_reason(shape, "kernel"); !why.empty()) return why;
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
  if (auto why = wrong_gpu_reason(shape, "fp8 kernel"); !why.empty()) return why;
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
                      shape.rows_per_expert <= rule.max_rows_per_expert;
  return kernel ? MoeGemmMethod::kHopperKernel : MoeGemmMethod::kCublasStreams;
}

MoeGemmDecision decide_fp8_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape) {
  return resolve(choice, auto_fp8_moe_gemm_method(shape), fp8_kernel_unsupported_reason(shape));
}

MoeGemmDecision decide_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape) {
  return resolve(choice, auto_moe_gemm_method(shape), hopper_kernel_unsupported_reason(shape));
}

}  // namespace paratwin::cuda_plan
