#pragma once
// The cases of bench_kernels: every compute kernel of the CUDA backend at a zoo model's prefill shapes, each timed on
// fresh seeded random data and held against the ceilings measured at construction. Bytes = what a kernel must read and
// write once; FLOPs = 2 per multiply-add, causal attention counting only the visible (query, key) pairs.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backend/cuda/grouped_gemm.hpp"
#include "bench/gpu/kernel_timing.hpp"
#include "models/model_spec.hpp"

namespace paratwin::bench {

// A kernel's result row. `work` is bytes (memory-bound kernels) or FLOPs; `target` a fraction of the ceiling (or of the
// dense GEMM for grouped GEMMs) the issue asks for, `anchor` the published figure to compare with. The layer's
// memory-bound kernels also carry `fraction_of_copy_at_size`: their rate over that of a device-to-device copy of the
// same bytes, timed the same way. That copy pays the fixed cost of a launch that the 2 GiB copy spreads over 2 ms
// (at 134 MB it reaches 0.74–0.76 of the 2 GiB copy's rate: docs/performance.md); the target stays a fraction of the
// 2 GiB copy.
struct KernelRow {
  std::string kernel, model, shape;
  double seconds = 0;
  double work = 0;
  bool flops = false;
  double fraction = 0;             ///< of the ceiling (or of `versus`)
  std::optional<double> target;    ///< fraction required
  std::string versus = "ceiling";  ///< what `fraction` divides by
  std::string anchor;
  std::optional<double> fraction_of_copy_at_size;
  std::int64_t prompt_tokens = 0;  ///< the prompt length the case's shapes come from (set_prompt_tokens)
};

/// Runs the cases and collects one row each. Construction creates the stream and cuBLAS handle on the current device
/// and measures the ceilings.
class KernelBench {
 public:
  KernelBench();
  ~KernelBench();
  KernelBench(const KernelBench&) = delete;
  KernelBench& operator=(const KernelBench&) = delete;

  void memory_kernels(const ModelSpec& m, std::int64_t tokens);  ///< rmsnorm, add, add_rmsnorm, rope, silu_mul
  void moe_kernels(const ModelSpec& m, std::int64_t tokens);     ///< router, permute, unpermute, combine
  void attention(const ModelSpec& m, std::int64_t tokens);       ///< attention_gemm and the reference kernel
  void dsa(const ModelSpec& m, std::int64_t tokens);             ///< indexer (bf16, fp8), top-k, sparse attention (DSA)
  /// MLA's per-head absorb GEMMs in the absorbed form (DSA models): q_nope · W_UK and the latent output · W_UV, one
  /// group per head of `tokens` rows each, by the engine's strided batched call and one cuBLAS GEMM per head.
  void mla_absorb_gemms(const ModelSpec& m, std::int64_t tokens);
  void dense_gemms(const ModelSpec& m, std::int64_t tokens);     ///< the dense projections of one layer
  void fp8_gemms(const ModelSpec& m, std::int64_t tokens);       ///< fp8 projections (fp8 models), both scalings
  void grouped_gemms(const ModelSpec& m, std::int64_t tokens, int ep);  ///< the MoE expert GEMMs
  /// The MoE expert GEMMs of fp8 models (fp8_grouped_gemm.hpp, block scales) on the backend's side streams and on one
  /// stream, against the dense block-scaled fp8 GEMM of the same size.
  void fp8_grouped_gemms(const ModelSpec& m, std::int64_t tokens, int ep);

  [[nodiscard]] const std::vector<KernelRow>& rows() const { return rows_; }
  /// The prompt length that the rows added from now on are measured at (the CSV's prompt_tokens column).
  void set_prompt_tokens(std::int64_t tokens) { prompt_tokens_ = tokens; }
  [[nodiscard]] const Ceilings& ceilings() const { return ceilings_; }

 private:
  std::uint64_t seed() { return ++seed_; }
  double time(const std::function<void()>& launch, int timed = 10, int warmup = 2);
  /// median_seconds_in_turns on the bench's stream: `launch` and the `reference` it is compared with, timed in turns.
  PairedSeconds time_against(const std::function<void()>& reference, const std::function<void()>& launch);
  void add_bytes(std::string kernel, const ModelSpec& m, std::string shape, double s, double bytes,
                 std::optional<double> target = std::nullopt);
  /// A row of the layer's memory-bound kernels (issue 6: ≥ 80 % of the copy), with the copy of the same bytes timed
  /// too.
  void add_layer_memory_kernel(std::string kernel, const ModelSpec& m, std::string shape, double s, double bytes);
  void add_flops(std::string kernel, const ModelSpec& m, std::string shape, double s, double flops, std::string anchor,
                 std::optional<double> target = std::nullopt);
  std::vector<int> random_ints(std::int64_t count, int bound);
  /// The fp8 ceiling: a per-tensor-scaled fp8 cuBLASLt GEMM of 8192³ on random data, measured on first use.
  double fp8_gemm_flops_per_s();
  /// Rows per local expert of one EP rank when `tokens` tokens each pick top-k distinct experts uniformly.
  std::vector<std::int64_t> routed_group_rows(const ModelSpec& m, std::int64_t tokens, int ep);

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  Ceilings ceilings_;
  std::vector<KernelRow> rows_;
  std::int64_t prompt_tokens_ = 0;
  std::uint64_t seed_ = 100;
  std::optional<double> fp8_gemm_flops_per_s_;
  cuda::GemmStreams side4_{4}, side8_{8};  ///< the grouped GEMM's concurrent method at 4 (the backend's) and 8 streams
};

}  // namespace paratwin::bench
