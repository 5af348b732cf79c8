#pragma once
/// FP8 (e4m3) GEMMs through cuBLASLt: row-major Y [m × n] (bf16) = X [m × k] · Wᵀ, with X the activation [m × k] and
/// W the weight stored [n × k] (both k-contiguous: the "TN" form Hopper's fp8 tensor cores need), fp32 accumulation.
/// Column-major cuBLASLt sees Yᵀ = op(A)·B with A = W (transposed) and B = X.
///
/// Two ways to scale the fp8 operands back to real values, both as cuBLASLt's scale pointers (fp32, device memory):
/// - kPerTensor: one fp32 scale for all of X and one for all of W (CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F).
/// - kBlock: DeepSeek-V3's block quantisation: one scale per 1×128 group of X (VEC128_32F) and one per 128×128 block
///   of W (BLK128x128_32F); cuBLAS ≥ 12.9 on Hopper (sm_90) only, k a multiple of 128, no fast accumulation.
///
/// Scale layouts and row padding of kBlock (cuBLASLt's, checked against a host reference in
/// tests/gpu/test_fp8_gemm.cpp):
/// - cuBLASLt's 1×128 mode takes only row counts that are a multiple of 4 (on an H200 with cuBLAS 13.1 its heuristic
///   finds algorithms for m = 4, 8, 12, 56, 80, 292 and none for 1–3, 5–7, 13, 55, 77, 291; likely because X's scales
///   are stored k-group by k-group, one column of a scale per row each, whose starts must be 16-byte aligned). A call
///   of m rows therefore runs on m4 = fp8_padded_rows(m) = m rounded up to 4: X and Y must hold m4 rows (the rows past
///   m are read and written; their values mean nothing).
/// - X's scale of row r and k-group j is at index j·m4 + r. A block of rows run as its own GEMM (an expert's rows)
///   needs its own [m4 × k/128] scale block: fp8_activation_scale_count(rows, k) floats.
/// - W's scale of n-block i and k-block j is at index i·ldk + j, ldk = k/128 rounded up to a multiple of 4 (k-blocks
///   fastest, each row of scales 16-byte aligned); n need not be a multiple of 128 (the last block is partial).
///
/// The matmul descriptor, layouts and algorithm of a shape are made once, on the first call with that m, and cached
/// (an Fp8Gemm is bound to one n, k and scaling; its cache holds each m it has run). Later calls only set the operand
/// and scale pointers on the cached descriptor (host-side attributes) and enqueue: no allocation, no host sync.
/// cuBLASLt reads the descriptor when a call is enqueued, so calls on several streams may share one Fp8Gemm and its
/// plans (fp8_grouped_gemm.hpp runs an op's experts so): one cuBLASLt handle, but each stream its own workspace of
/// at least the size the plans were chosen with (concurrent matmuls must not share a workspace).
/// An Fp8Gemm is not thread-safe (one host thread enqueues); the engine gives each op of each rank its own.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

namespace paratwin::cuda {

enum class Fp8Scaling { kPerTensor, kBlock };

/// Rows and columns of one scale group / block of kBlock scaling.
inline constexpr std::int64_t kFp8ScaleBlock = 128;

/// The cuBLASLt workspace the engine gives each stream that runs fp8 GEMMs (and bench_kernels its fp8 rows): enough
/// for the algorithms cuBLASLt's heuristic picks at the zoo's shapes.
inline constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

/// Rows a call of m rows reads from X and writes to Y: m (kPerTensor) or m rounded up to a multiple of 4 (kBlock).
[[nodiscard]] std::int64_t fp8_padded_rows(Fp8Scaling scaling, std::int64_t m);
/// fp32 scales X [m × k] needs: 1 (kPerTensor) or fp8_padded_rows(m) · k/128 (kBlock).
[[nodiscard]] std::int64_t fp8_activation_scale_count(Fp8Scaling scaling, std::int64_t m, std::int64_t k);
/// fp32 scales W [n × k] needs: 1 (kPerTensor) or ceil(n/128) · round_up(k/128, 4) (kBlock).
[[nodiscard]] std::int64_t fp8_weight_scale_count(Fp8Scaling scaling, std::int64_t n, std::int64_t k);

/// Device pointers of one call. x, w: fp8 e4m3; scales: fp32 (the counts above); y: bf16.
struct Fp8GemmOperands {
  const void* x = nullptr;
  const float* x_scale = nullptr;
  const void* w = nullptr;
  const float* w_scale = nullptr;
  void* y = nullptr;
};

/// What one call runs on.
struct Fp8GemmLaunch {
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  ///< cuBLASLt's workspace (device memory), `workspace_bytes` large
  std::size_t workspace_bytes = 0;
  cudaStream_t stream = nullptr;
};

class Fp8Gemm {
 public:
  /// Checks the shape's rules (paratwin::Error naming n, k and the rule): n, k ≥ 1; k a multiple of 16 (fp8 rows
  /// must be 16-byte aligned); kBlock: k a multiple of 128.
  Fp8Gemm(Fp8Scaling scaling, std::int64_t n, std::int64_t k);
  ~Fp8Gemm();
  Fp8Gemm(const Fp8Gemm&) = delete;
  Fp8Gemm& operator=(const Fp8Gemm&) = delete;

  /// Enqueues Y = X · Wᵀ for m rows (m = 0: nothing); X and Y hold fp8_padded_rows(scaling, m) rows. The first call
  /// with an m picks cuBLASLt's algorithm for it (with launch.workspace_bytes as the limit); cuBLASLt finding none
  /// (e.g. a cuBLAS older than 12.9 for kBlock, or a GPU other than Hopper) throws paratwin::Error naming the shape and
  /// the scaling; so does any cuBLAS error.
  void run(const Fp8GemmLaunch& launch, const Fp8GemmOperands& operands, std::int64_t m);

  [[nodiscard]] Fp8Scaling scaling() const { return scaling_; }
  [[nodiscard]] std::int64_t n() const { return n_; }
  [[nodiscard]] std::int64_t k() const { return k_; }
  /// How many shapes (values of m) have a cached plan.
  [[nodiscard]] std::size_t cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  Plan& plan(const Fp8GemmLaunch& launch, const Fp8GemmOperands& operands, std::int64_t m);

  Fp8Scaling scaling_;
  std::int64_t n_ = 0, k_ = 0;
  std::map<std::int64_t, std::unique_ptr<Plan>> plans_;  ///< per m
};

}  // namespace paratwin::cuda
