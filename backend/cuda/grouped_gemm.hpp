#pragma once
/// MoE expert GEMMs: group g computes Y_g [rows_g × n] = X_g [rows_g × k] · W_g [k × n] (row-major bf16, fp32
/// accumulation, bf16 out), where X_g and Y_g are consecutive row blocks of X and Y (the experts' rows in expert order)
/// and each expert has its own weight matrix W_g.
///
/// Five ways to launch it (bench_kernels --grouped-only measures them all at the zoo's MoE shapes; docs/performance.md
/// "MoE expert GEMMs" has the figures):
/// - kConcurrent (the engine's "cublas-streams", what `paratwin run --moe-gemm auto` runs outside its rule's band of
///   shapes: backend/cuda_plan/moe_gemm_rule.hpp): one cublasGemmEx per expert, spread over a few side streams
///   (GemmStreams) that fork from and join back into the caller's stream, so experts with few rows share the GPU
///   instead of each filling a small part of it in turn. 0.87–1.05 × the dense GEMM of the same size from ~1,000 rows
///   per expert, 0.64–0.85 × at 256–512 (8K tokens), on H200.
/// - kPersistentKernel (the engine's "hopper-kernel", and auto's at 128–768 rows per expert where n ≤ 4096): the
///   backend's own Hopper kernel (grouped_gemm_kernel.hpp): one persistent launch for every expert, in clusters of two
///   blocks that load X and W by TMA and multicast the operand they share, where grouped_kernel_supports(n, k) (n a
///   multiple of 256, k of 64) and the launch carries the device pointer table, the tile schedule and
///   kernel_tensor_maps(); elsewhere it runs kConcurrent (the loop without side streams). Measured on H200 at
///   0.57–0.86 × dense at 8K tokens and 0.78–0.94 × at 32K: level with or faster than kConcurrent at 6 of the 8 8K
///   shapes (0.99–1.17 × its rate), slower at DeepSeek-V3.2's 8K down GEMMs and at 32K (0.75–1.02 ×).
/// - kCublasGrouped: one cublasGemmGroupedBatchedEx (cuBLAS ≥ 12.5) for every expert. Measured on H200 (cuBLAS 13)
///   at 0.30–0.42 × the dense GEMM of the same size, half the speed of the sequential loop or less at every zoo
///   MoE shape, so the backend does not use it.
/// - kChunkedBatched: every expert's whole chunks of `chunk_rows` rows as one cublasGemmBatchedEx (one launch whose
///   blocks walk all experts' chunks), the experts' remaining rows (< chunk_rows each) as one cublasGemmEx each; the
///   batched call on the first side stream, the remainders on the others.
///   Measured at 0.53–0.99 × dense (chunks of 128; 64: 0.35–0.61), below kConcurrent at every 8K shape.
/// - kSequential: one cublasGemmEx per expert on the caller's stream (the fallback without side streams).
/// - kStridedBatched: one cublasGemmStridedBatchedEx where every non-empty group has the same rows and the groups'
///   W, X and Y lie equally spaced (MLA's per-head absorb GEMMs: one group per head, all of the rank's tokens each, as
///   SGLang's torch.bmm runs them); elsewhere kConcurrent (or the loop without side streams). At DeepSeek-V3.2's
///   absorb shapes one launch instead of one per head, which the heads' small GEMMs (a few µs each) left launch-bound.
///
/// Everything a launch needs is prepared when the op is bound: the per-group sizes here, the operand pointer tables
/// (`operand_addresses`, resolved by the caller once its buffers exist; for kPersistentKernel also its tile schedule
/// and tensor maps, which the caller copies to the device once). Launching allocates nothing and never waits
/// for the GPU on the host.

#include <cublas_v2.h>
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace paratwin::cuda {

/// Side streams of one GPU for concurrent expert GEMMs, each with its own cuBLAS handle (kernels running at the same
/// time must not share a handle's workspace), optionally its own cuBLASLt workspace (the fp8 expert GEMMs,
/// fp8_grouped_gemm.hpp: concurrent cuBLASLt matmuls must not share one either), a fork event, and per stream a join
/// event and a signal event. Created on the current device (1 to kMaxGemmSideStreams streams); cuBLAS and CUDA errors
/// throw paratwin::Error.
class GemmStreams {
 public:
  /// `lt_workspace_bytes` > 0: each stream gets a cuBLASLt workspace of that many bytes (device memory).
  explicit GemmStreams(int streams, std::size_t lt_workspace_bytes = 0);
  ~GemmStreams();
  GemmStreams(const GemmStreams&) = delete;
  GemmStreams& operator=(const GemmStreams&) = delete;
  [[nodiscard]] int size() const { return static_cast<int>(streams_.size()); }
  [[nodiscard]] cudaStream_t stream(int i) const { return streams_[static_cast<std::size_t>(i)]; }
  /// Stream i's cuBLASLt workspace (null where the streams were made without).
  [[nodiscard]] void* lt_workspace(int i) const { return lt_workspaces_[static_cast<std::size_t>(i)]; }
  [[nodiscard]] std::size_t lt_workspace_bytes() const { return lt_workspace_bytes_; }

  /// Every side stream waits for what `origin` has enqueued so far.
  void fork(cudaStream_t origin) const;
  /// `origin` waits for what every side stream has enqueued so far.
  void join(cudaStream_t origin) const;
  /// Records stream `from`'s signal event (what it has enqueued so far) and makes stream `to` wait for it.
  void signal(int from, int to) const;

 private:
  friend class GroupedGemm;
  void release() noexcept;  ///< destroys what the constructor made (also after a failure part-way)
  std::vector<cudaStream_t> streams_;
  std::vector<cublasHandle_t> handles_;
  std::vector<cudaEvent_t> joins_, signals_;
  std::vector<void*> lt_workspaces_;
  std::size_t lt_workspace_bytes_ = 0;
  cudaEvent_t fork_ = nullptr;
};

/// Side streams the engine gives every rank: at ~256 rows per expert one expert's GEMM fills about a quarter of an
/// H200's 132 SMs.
inline constexpr int kGemmSideStreams = 4;
inline constexpr int kMaxGemmSideStreams = 16;

enum class GroupedGemmMethod {
  kPersistentKernel,
  kConcurrent,
  kCublasGrouped,
  kChunkedBatched,
  kSequential,
  kStridedBatched
};

/// kChunkedBatched's default chunk height.
inline constexpr std::int64_t kGroupedChunkRows = 128;

class GroupedGemm {
 public:
  /// Where one group's operand lives: `buffer`'s address + `offset_bytes`. `buffer` is the caller's handle (a
  /// BufferPool id); GroupedGemm never reads it.
  struct Address {
    int buffer = -1;
    std::int64_t offset_bytes = 0;
  };
  /// The three operand buffers: X (rows × k), Y (rows × n), and each group's W (k × n) by its own address.
  struct Operands {
    int x = -1, y = -1;
    std::vector<Address> weights;  ///< one per group, empty groups included
  };
  /// What a launch runs on. `device_table` (kCublasGrouped, kPersistentKernel) and `host_table` (all) hold
  /// operand_addresses() resolved to pointers; `device_schedule` is a device copy of kernel_schedule()
  /// (kPersistentKernel); `side` null makes kConcurrent run as kSequential.
  struct Launch {
    cublasHandle_t blas = nullptr;  ///< bound to `stream`
    cudaStream_t stream = nullptr;
    const GemmStreams* side = nullptr;
    void* const* device_table = nullptr;
    void* const* host_table = nullptr;
    const int* device_schedule = nullptr;
    const CUtensorMap* device_tensor_maps = nullptr;  ///< a device copy of kernel_tensor_maps() (kPersistentKernel)
  };

  /// Groups with 0 rows are left out (they own no rows of X or Y). n, k ≥ 1, chunk_rows ≥ 1; sizes in int range.
  GroupedGemm(std::vector<std::int64_t> group_rows, std::int64_t n, std::int64_t k,
              std::int64_t chunk_rows = kGroupedChunkRows);

  /// The pointer table, in cuBLAS's order: W of every non-empty group (cuBLAS's A: the GEMM runs as Yᵀ = Wᵀ·Xᵀ in
  /// column-major), then X's row blocks (B), then Y's row blocks (C); then the same three lists for kChunkedBatched's
  /// whole chunks (W of the chunk's group, X's and Y's chunk_rows-row blocks).
  [[nodiscard]] std::vector<Address> operand_addresses(const Operands& operands) const;

  /// Whether kPersistentKernel can run this n × k (grouped_kernel_supports).
  [[nodiscard]] bool kernel_supported() const { return kernel_supported_; }
  /// The persistent kernel's tile schedule (cuda_plan::GroupedTileSchedule::table) for the caller to upload once;
  /// empty where the kernel is not supported or every group is empty.
  [[nodiscard]] const std::vector<int>& kernel_schedule() const { return kernel_schedule_; }
  /// The persistent kernel's tensor maps (W and X of every non-empty group, grouped_gemm_kernel.hpp) of the operands in
  /// `host_table` (operand_addresses resolved), for the caller to copy to device memory (64-byte aligned) once its
  /// buffers exist; empty where the kernel is not supported, every group is empty, or an operand does not suit the
  /// copy engine (W_g, X_g and Y_g 16-byte aligned).
  [[nodiscard]] std::vector<CUtensorMap> kernel_tensor_maps(void* const* host_table) const;

  /// Enqueues the GEMM. kCublasGrouped runs the loop instead where cuBLAS is older than 12.5 or answers "not
  /// supported"; kPersistentKernel runs kConcurrent (or the loop without side streams) where the kernel does not
  /// support n × k or the launch lacks the device tables or tensor maps (kernel_tensor_maps gives none for operands
  /// off the 16-byte rule); kStridedBatched runs kConcurrent (or the loop) where the groups' rows differ or their
  /// operands in `host_table` are not equally spaced.
  /// Returns whether the method asked for is the one that ran. cuBLAS and CUDA errors throw paratwin::Error.
  bool run(const Launch& launch, GroupedGemmMethod method) const;

  [[nodiscard]] int groups_in_call() const { return static_cast<int>(m_.size()); }
  /// Whether every non-empty group has the same rows (kStridedBatched's first condition; true for none or one).
  [[nodiscard]] bool equal_groups() const { return equal_groups_; }
  [[nodiscard]] double flops() const;

 private:
  void gemm(cublasHandle_t blas, void* const* host_table, std::size_t g) const;
  bool run_cublas_grouped(const Launch& launch) const;
  bool run_kernel(const Launch& launch) const;
  bool run_chunked(const Launch& launch) const;
  bool run_strided_batched(const Launch& launch) const;
  void run_concurrent(const Launch& launch) const;

  std::vector<std::int64_t> group_rows_;
  std::int64_t n_ = 0, k_ = 0;
  bool cublas_grouped_available_ = false;
  bool kernel_supported_ = false;
  bool equal_groups_ = true;
  std::vector<int> kernel_schedule_;
  int kernel_pairs_ = 0;
  // Per non-empty group, the arguments cuBLAS reads from host memory (one problem per group).
  std::vector<cublasOperation_t> trans_;
  std::vector<int> m_, n_arr_, k_arr_, lda_, ldb_, ldc_, group_size_;
  std::vector<float> alpha_, beta_;
  std::vector<std::size_t> by_rows_;  ///< non-empty groups, most rows first (the order side streams take them)
  std::int64_t chunk_rows_ = kGroupedChunkRows;
  int chunks_ = 0;                    ///< whole chunks of all groups (kChunkedBatched's batch)
  std::vector<std::size_t> by_tail_;  ///< non-empty groups with a remainder, largest remainder first
  std::vector<int> tail_rows_;        ///< per non-empty group: rows past its whole chunks
};

}  // namespace paratwin::cuda
