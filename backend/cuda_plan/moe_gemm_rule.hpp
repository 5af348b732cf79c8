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

/// Where --moe-gemm auto runs the Hopper kernel (where the GPU and n × k allow it): experts of
/// [min_rows_per_expert, max_rows_per_expert] rows each, and each expert's output at most max_n wide. An empirical
/// rule fitted to the zoo's MoE shapes measured on H200 (docs/performance.md "MoE expert GEMMs"), not a model of the
/// kernel:
/// - rows: every shape measured was at 8K tokens (~255 and ~514 rows per expert: the kernel level or ahead) or at 32K
///   (~1,020-2,060: the streams ahead at every shape). The band runs from half the smallest measured count to halfway
///   between the two groups; outside it nothing was measured or the kernel lost.
/// - n: the one 8K shape where the kernel lost to the streams in both the bench and the engine is DeepSeek-V3.2's down
///   GEMM, the one with n above 4096 (n 7168, k 2048: 0.75-0.89 x the streams' rate at EP 1 and 0.96-1.00 x at EP 8
///   over the day's bench_kernels runs of this kernel, 3 % slower in the engine); the other three (n 3072 and 4096,
///   k 1536-7168) ran 0.97-1.17 x in bench_kernels and 4-11 % faster in the engine.
struct AutoMoeGemmRule {
  double min_rows_per_expert = 128;
  double max_rows_per_expert = 768;
  std::int64_t max_n = 4096;
};

/// --moe-gemm auto's choice for `shape`; `rule` is a parameter so that the tests can move its bounds.
[[nodiscard]] MoeGemmMethod auto_moe_gemm_method(const MoeGemmShape& shape, const AutoMoeGemmRule& rule = {});

/// Why the Hopper kernel cannot run `shape` ("the GPU is sm_80; the kernel runs on sm_90 only", "n 192 x k 160 is off
/// the kernel's tiles (n a multiple of 256, k of 64)"); empty where it can (its operands' 16-byte alignment is checked
/// later, when their tensor maps are encoded).
[[nodiscard]] std::string hopper_kernel_unsupported_reason(const MoeGemmShape& shape);

/// fp8 experts with block scales (backend/cuda/fp8_grouped_gemm.hpp): why the backend's persistent fp8 kernel
/// (fp8_grouped_gemm_kernel.hpp) cannot run `shape` (not sm_90; n not a multiple of 256; k not of 128); empty where
/// it can.
[[nodiscard]] std::string fp8_kernel_unsupported_reason(const MoeGemmShape& shape);

/// Where --moe-gemm auto runs fp8 experts on the persistent fp8 kernel rather than block-scaled cuBLASLt calls on the
/// side streams (where the GPU and n × k allow it): experts of [min_rows_per_expert, max_rows_per_expert] rows each.
/// An empirical rule fitted to DeepSeek-V3.2's fp8 expert GEMMs measured on H200, 2026-11-29, with the kernel's scales
/// staged in shared memory (docs/performance.md "MoE expert GEMMs", the fp8 kernel's bullets; bench_kernels
/// --fp8-experts-only, the kernel's time against the 4 streams' in the same runs, medians of two), not a model of the
/// kernel:
/// - rows: at ~253-256 rows per expert (8K tokens) the kernel ran both GEMMs faster than the streams: gate_up (n 4096,
///   k 7168) 1.10 × at EP 1 and 1.29 × at EP 8, down (n 7168, k 2048) 1.31 × and 1.27 × (the streams' median over the
///   call's four runs); at ~1,024 (32K) it lost every shape (0.82-0.94 ×). The band runs from half the smallest
///   measured count to halfway between the two.
/// - n and k: no bound. Before the scales were staged (they were read from L2 while the wgmma ran) the kernel lost the
///   8K gate_up GEMM (0.92 ×) and the rule had k ≤ 2048; in the engine (`paratwin run --model deepseek-v3.2
///   --prompt-len 8192 --layers 4 --moe-gemm hopper-kernel`) gate_up now runs 4.452 ms against the streams' 4.949 and
///   down 2.390 against 2.914.
struct AutoFp8MoeGemmRule {
  double min_rows_per_expert = 128;
  double max_rows_per_expert = 640;
};

/// --moe-gemm auto's choice for fp8 experts at `shape`; `rule` is a parameter so that the tests can move its bounds.
[[nodiscard]] MoeGemmMethod auto_fp8_moe_gemm_method(const MoeGemmShape& shape, const AutoFp8MoeGemmRule& rule = {});

/// The launch of one op: the method `choice` resolves to at `shape`, and where the Hopper kernel was asked for (or
/// picked by the rule) but cannot run, `fallback` says why and the method is cuBLAS streams.
struct MoeGemmDecision {
  MoeGemmMethod method = MoeGemmMethod::kCublasStreams;
  std::string fallback;
};
[[nodiscard]] MoeGemmDecision decide_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape);
/// The same for fp8 experts: kHopperKernel is the persistent fp8 kernel, kCublasStreams the cuBLASLt calls on the
/// side streams.
[[nodiscard]] MoeGemmDecision decide_fp8_moe_gemm(MoeGemmChoice choice, const MoeGemmShape& shape);

}  // namespace paratwin::cuda_plan
