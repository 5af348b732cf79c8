#pragma once
/// The fp8 expert GEMMs of one MoE op (DeepSeek-V3's block scales: fp8_gemm.hpp's kBlock): group g computes
/// Y_g [rows_g × n] (bf16) = X_g [rows_g × k] · W_gᵀ, X_g and Y_g consecutive row blocks of X and Y (the experts' rows
/// in expert order), W_g [n × k] the expert's weight with its own 128×128-block scales, X_g with its own block of
/// 1×128-group scales. One block-scaled cuBLASLt call per non-empty group.
///
/// With side streams (GemmStreams made with cuBLASLt workspaces) the calls run concurrently, like the bf16 experts'
/// kConcurrent (grouped_gemm.hpp): forked from and joined into the caller's stream, each stream with its own
/// workspace (the one cuBLASLt handle is shared: it holds no per-call state). A block-scaled call writes its rows
/// rounded up to 4, up to 3 garbage rows into the next groups' first rows; cuda_plan::plan_fp8_group_streams gives
/// each stream a contiguous run of groups and orders the runs' boundary groups so that every row is written last by
/// its own group (fp8_group_streams.hpp says how). Without side streams, every call runs in group order on the
/// caller's stream. run_kernel instead runs every group in one launch of the backend's persistent fp8 kernel
/// (fp8_grouped_gemm_kernel.hpp; the engine's choice between the two: cuda_plan::decide_fp8_moe_gemm).
///
/// Buffers (the caller's): X and Y hold rows() + 3 rows (the last group's rounding), X's scales
/// activation_scale_count() floats (each group's block in its padded rows, group after group), W's
/// weight_scale_count() floats per group.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda_plan/fp8_group_streams.hpp"

namespace paratwin::cuda {

class Fp8GroupedGemm {
 public:
  /// Base pointers: X and Y (rows() + 3 rows), X's scales, the groups' weights (group after group, n × k each), their
  /// scales (weight_scale_count() each).
  struct Operands {
    const void* x = nullptr;
    const float* x_scale = nullptr;
    const void* w = nullptr;
    const float* w_scale = nullptr;
    void* y = nullptr;
  };
  struct Launch {
    cublasLtHandle_t lt = nullptr;
    void* workspace = nullptr;  ///< the caller's stream's (runs without side streams)
    std::size_t workspace_bytes = 0;
    cudaStream_t stream = nullptr;
    const GemmStreams* side = nullptr;         ///< null, or made without cuBLASLt workspaces: every call on `stream`
    const int* device_kernel_table = nullptr;  ///< a device copy of kernel_table() (run_kernel)
  };

  /// n, k: as Fp8Gemm (kBlock: k a multiple of 128; paratwin::Error otherwise). Groups of 0 rows run nothing. Where
  /// the kernel supports the shape (kernel_table() not empty), allocates the kernel's pair counter (4 bytes of device
  /// memory on the current device).
  Fp8GroupedGemm(std::vector<std::int64_t> group_rows, std::int64_t n, std::int64_t k);

  /// Enqueues every group's GEMM; allocates nothing and never waits on the host (after the first call of each row
  /// count, which picks its algorithm). cuBLAS and CUDA errors throw paratwin::Error.
  void run(const Launch& launch, const Operands& operands);

  /// Enqueues every group's GEMM as one launch of the backend's persistent fp8 kernel (fp8_grouped_gemm_kernel.hpp)
  /// on launch.stream, writing each group's rows only (none past them), with launch.device_kernel_table. False (and
  /// nothing enqueued) where the kernel does not support n × k, the table is missing, or X, W, Y or a scale array is
  /// not 16-byte aligned; the caller then runs run(). One launch at a time: launches of one Fp8GroupedGemm share its
  /// pair counter, so they must not overlap (enqueue them on one stream). CUDA errors throw paratwin::Error.
  bool run_kernel(const Launch& launch, const Operands& operands) const;
  /// The kernel's tile schedule and group places (Fp8GroupedKernelArgs::table) for the caller to upload once; empty
  /// where the kernel does not support n × k or every group is empty.
  [[nodiscard]] const std::vector<int>& kernel_table() const { return kernel_table_; }

  [[nodiscard]] std::int64_t rows() const { return offsets_.back(); }
  [[nodiscard]] std::int64_t activation_scale_count() const { return scale_offsets_.back() * k_ / kFp8ScaleBlock; }
  [[nodiscard]] std::int64_t weight_scale_count() const;
  /// The stream plan of `streams` side streams (what run follows with that many).
  [[nodiscard]] const std::vector<cuda_plan::Fp8StreamRun>& stream_runs(int streams);

 private:
  void run_groups(const Fp8GemmLaunch& launch, const Operands& operands, std::int64_t first, std::int64_t end);

  std::vector<std::int64_t> group_rows_;
  std::int64_t n_ = 0, k_ = 0;
  std::vector<std::int64_t> offsets_{0};        ///< first row of each group in X and Y, then the total
  std::vector<std::int64_t> scale_offsets_{0};  ///< first padded row of each group's scale block, then the total
  Fp8Gemm gemm_;
  std::vector<int> kernel_table_;
  int kernel_groups_ = 0, kernel_pairs_ = 0;
  struct DeviceFree {
    void operator()(int* p) const noexcept;
  };
  std::unique_ptr<int, DeviceFree> pair_counter_;  ///< Fp8GroupedKernelArgs::pair_counter
  int planned_streams_ = 0;
  std::vector<cuda_plan::Fp8StreamRun> runs_;
};

}  // namespace paratwin::cuda
