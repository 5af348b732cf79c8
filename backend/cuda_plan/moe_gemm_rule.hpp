#pragma once
/// Which launch each MoE expert GEMM of the CUDA backend runs (backend/cuda/grouped_gemm.hpp): cuBLAS GEMMs on side
/// streams, or the backend's persistent Hopper kernel where the user asks for it (--moe-gemm hopper-kernel) or the
/// per-shape rule of --moe-gemm auto picks it, and the GPU and the shape allow it. Decided once per op when the op is
/// bound, from the op's shape and the GPU's compute capability alone: plain C++, so the CPU tests check it.

#include <cstdint>
#include <string>
#include <string_view>

#include "backend/moe_gemm_choice.hpp"

namespace paratwin::cuda_plan {

enum class MoeGemmMethod { kCublasStreams, kHopperKernel };

[[nodiscard]] std::string_view moe_gemm_method_name(MoeGemmMethod method);

/// What the decision reads of one grouped GEMM and its GPU.
struct MoeGemmShape {
  double rows_per_expert = 0;  ///< the op's rows over its local experts (empty experts included)
  std::int64_t n = 0, k = 0;   ///< each expert's W is k × n
  int compute_capability = 0;  ///< major × 10 + minor: 90 for an H100 or H200
};

/// The one GPU generation the kernel is built for (sm_90a: wgmma, the bulk tensor copies, clusters).
inline constexpr int kHopperKernelComputeCapability = 90;

/// --moe-gemm auto runs the Hopper kernel where the GPU and n × k allow it and the experts have at most this many rows
/// each (the kernel's wins were all at 8K tokens, ~256-512 rows per expert; at 32K, ~1,000-2,000, it stayed at or
/// behind the streams). 0: nowhere yet. Measured on H200 (docs/performance.md "MoE expert GEMMs", bench_kernels
/// --grouped-only, branch issue6-grouped-schedule): at 8K tokens the kernel ran at 0.99-1.17 x the 4 streams' rate at
/// 6 of the 8 zoo shapes but beat them by more than the ~6 % run-to-run spread at one only (DeepSeek-V3.2 EP 8
/// gate_up), and ran at 0.75-0.97 x at DeepSeek-V3.2's 8K down GEMMs: no threshold on rows per expert picks it safely.
/// In the engine (same document, "--moe-gemm") it ran 8K gate_up 9-11 % faster and DeepSeek-V3.2's 8K down 3 % slower.
inline constexpr double kAutoKernelMaxRowsPerExpert = 0;

/// --moe-gemm auto's rule, with its threshold as a parameter so that the tests can exercise its other conditions.
[[nodiscard]] MoeGemmMethod auto_moe_gemm_method(const MoeGemmShape& shape,
                                                 double kernel_max_rows_per_expert = kAutoKernelMaxRowsPerExpert);

/// Why the Hopper kernel cannot run `shape` ("the GPU is sm_80; the kernel needs sm_90", "n 192 is not a multiple of
/// 256"); empty where it can (its operands' 16-byte alignment is checked later, when their tensor maps are encoded).
[[nodiscard]] std::string hopper_kernel_unsupported_reason(const MoeGemmShape& shape);

/// The launch of one op: the method `choice` resolves to at `shape`, and where the Hopper kernel was asked for (or
/// picked by the rule) but cannot run, `fallback` says why and the method is cuBLAS streams.
struct MoeGemmDecision {
  MoeGemmMethod method = MoeGemmMethod::kCublasStreams;
  std::string fallback;
};
[[nodiscard]] MoeGemmDecision decide_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape);

}  // namespace paratwin::cuda_plan
