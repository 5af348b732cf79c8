#pragma once
/// Binds one rank's ops to device buffers and kernels. Every op gets buffers sized from its shape or bytes and the
/// kernel of its kind. For dense GQA/MHA layers under all-gather CP (or none) the ops also carry the real data flow
/// (the functional executor): named tensors (residual stream, QKV, KV cache, ...) wired by each op's role in its
/// name ("L3.attn.kv_all_gather" → role "attn.kv_all_gather"), weights seeded from the full (unsharded) tensor so
/// that any layout computes the same function as a single GPU. Other ops (MoE, MLA, DSA, ring/Ulysses CP) run their
/// kernels on scratch buffers of their real shapes.

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda_plan/nccl_call_plan.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"

namespace paratwin::cuda {

/// Device memory of one rank: named buffers, sized by the largest request, allocated once.
class BufferPool {
 public:
  struct Random {
    std::int64_t rows = 0, cols = 0, row_offset = 0, full_cols = 0;
    int col_map = -1;  ///< buffer id of an int column map, -1: identity
    std::uint64_t seed = 0;
    float scale = 1, bias = 0;
    bool fp32 = false;
    bool fp8 = false;  ///< e4m3 elements (fp32 wins when both are set)
  };
  /// What a scratch buffer holds at allocation: random bf16 in [−1, 1), random fp8 e4m3 in [−1, 1), or random fp32
  /// scales in [0.5, 1.5) (quantisation scales: positive, never zero).
  enum class Fill { kBf16, kFp8, kScaleFp32 };
  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

  /// A scratch/activation buffer of at least `bytes` (seeded random `fill` at allocation, never zeros); every request
  /// of one name asks for the same fill.
  int request(const std::string& name, std::int64_t bytes, Fill fill = Fill::kBf16);
  /// Makes buffer `id` at least `bytes` large.
  void grow(int id, std::int64_t bytes);
  /// A seeded random tensor (weights, or data that must look real).
  int random(const std::string& name, const Random& init);
  /// An int32 table uploaded from the host.
  int ints(const std::string& name, std::vector<int> values);
  /// A table of pointers into this pool's buffers (buffer id + byte offset each), resolved on the host when the
  /// buffers are allocated: the expert GEMMs' operands, so that no launch computes them.
  int pointer_table(std::vector<GroupedGemm::Address> entries);

  [[nodiscard]] void* ptr(int id) const { return entries_[static_cast<std::size_t>(id)].ptr; }
  [[nodiscard]] std::int64_t bytes(int id) const { return entries_[static_cast<std::size_t>(id)].bytes; }
  /// Pointer table `table` (valid after allocate).
  [[nodiscard]] void* const* pointers(int table) const { return tables_[static_cast<std::size_t>(table)].data(); }
  [[nodiscard]] std::int64_t total_bytes() const;
  /// Allocates and initialises every buffer (on the current device) on `stream`.
  void allocate(cudaStream_t stream);
  void release();

 private:
  struct Entry {
    std::string name;
    std::int64_t bytes = 0;
    bool is_random = false;
    Fill fill = Fill::kBf16;  ///< scratch buffers (not random, not ints)
    Random init;
    std::vector<int> host_ints;
    void* ptr = nullptr;
  };
  int find_or_add(const std::string& name);
  std::vector<Entry> entries_;
  std::map<std::string, int> by_name_;
  std::vector<std::vector<GroupedGemm::Address>> table_addresses_;
  std::vector<std::vector<void*>> tables_;  ///< table_addresses_ resolved by allocate
};

inline constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

struct ExecCtx {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  const BufferPool* pool = nullptr;
  cublasLtHandle_t blas_lt = nullptr;  ///< fp8 GEMMs
  void* lt_workspace = nullptr;
  std::size_t lt_workspace_bytes = 0;
  void* attention_workspace = nullptr;  ///< S and P of attention_gemm, fused attention's (attention_dispatch.hpp)
  std::size_t attention_workspace_bytes = 0;
  CudnnAttention* cudnn_attention = nullptr;       ///< fused attention; null: unfused only
  AttentionPathCounts* attention_paths = nullptr;  ///< calls per attention path, counted when set
  const GemmStreams* gemm_streams = nullptr;       ///< side streams of the expert GEMMs (grouped_gemm.hpp)
};

/// One op, bound: a compute op's launch, or a communication with its NCCL call and buffers.
struct BoundOp {
  std::function<void(const ExecCtx&)> compute;
  cuda_plan::NcclCall call;
  int send_buffer = -1, recv_buffer = -1;  ///< in-place calls use send_buffer only
  bool functional = false;                 ///< carries the real data flow
};

/// Where a rank's outputs are after a step, for the numerical check.
struct RankOutputs {
  struct Rows {
    int buffer = -1;  ///< the residual stream after the rank's last layer (bf16, rows × hidden)
    std::vector<std::int64_t> request, position;  ///< per local row
  };
  std::vector<Rows> hidden;  ///< per micro-batch (ranks of the last PP stage only)
  int logits_buffer = -1;    ///< fp32 [requests × vocab] (all-gathered over attention TP), last micro-batch
  std::int64_t logits_cols = 0;
  std::int64_t hidden_size = 0;
};

struct RankProgram {
  BufferPool pool;
  std::vector<BoundOp> ops;
  RankOutputs outputs;
  std::vector<std::string> generic_ops;  ///< names of ops without the real data flow
};

/// Binds every op of `rank`. `model` gives the dimensions the weights need; `seed` seeds weights and token ids.
/// Throws paratwin::Error for ops the backend cannot run (fp8 GEMMs, top-k above 32, ...), naming the op.
void bind_rank(const Schedule& schedule, const ModelSpec& model, int rank, std::uint64_t seed, RankProgram& program);

}  // namespace paratwin::cuda
