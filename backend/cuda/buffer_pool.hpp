#pragma once
/// The device memory of one rank's bound ops (op_binder.hpp): named buffers sized by their largest request, seeded
/// random contents (weights, activations, scratch: never zeros), int tables, operand pointer tables and the persistent
/// grouped GEMM kernel's device tables, allocated once before the first step.

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/grouped_gemm.hpp"

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

  /// What GroupedGemmMethod::kPersistentKernel reads from device memory (GroupedGemm::Launch): pointer table
  /// `table` resolved, the tile schedule and the tensor maps. All null where the kernel cannot run these operands.
  struct GroupedKernelTables {
    void* const* pointers = nullptr;
    const int* schedule = nullptr;
    const CUtensorMap* tensor_maps = nullptr;
    [[nodiscard]] bool ready() const { return tensor_maps != nullptr; }
  };
  /// The device tables of `gemm` over pointer table `table` (of this pool), made by allocate in one device block the
  /// pool owns: none where gemm.kernel_tensor_maps gives none (the kernel does not support n × k, every group is
  /// empty, or an operand is off the copy engine's 16-byte rule), so that its launches run another method.
  int grouped_kernel_tables(std::shared_ptr<const GroupedGemm> gemm, int table);
  /// Tables `id` of grouped_kernel_tables (valid after allocate).
  [[nodiscard]] const GroupedKernelTables& kernel_tables(int id) const {
    return kernel_tables_[static_cast<std::size_t>(id)].device;
  }

  [[nodiscard]] void* ptr(int id) const { return entries_[static_cast<std::size_t>(id)].ptr; }
  [[nodiscard]] std::int64_t bytes(int id) const { return entries_[static_cast<std::size_t>(id)].bytes; }
  /// Pointer table `table` (valid after allocate).
  [[nodiscard]] void* const* pointers(int table) const { return tables_[static_cast<std::size_t>(table)].data(); }
  /// The device bytes of the buffers and kernel tables (each rounded up to 256). Before allocate an upper bound: it
  /// counts every grouped_kernel_tables block that allocate may make; after it, only the blocks it made (none where
  /// the operands got no tensor maps).
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
  struct KernelTablesEntry {
    std::shared_ptr<const GroupedGemm> gemm;
    int table = -1;
    std::vector<unsigned char> staging;  ///< the host image of `block` until allocate's copy has finished
    void* block = nullptr;               ///< tensor maps, then the pointer table, then the schedule
    GroupedKernelTables device;
  };
  static std::int64_t kernel_tables_bytes(const KernelTablesEntry& e, std::size_t pointers);
  void make_kernel_tables(KernelTablesEntry& e, cudaStream_t stream);
  std::vector<KernelTablesEntry> kernel_tables_;
  bool allocated_ = false;  ///< allocate has made the kernel tables (total_bytes counts the blocks it made)
};

}  // namespace paratwin::cuda
