#include "backend/cuda/buffer_pool.hpp"

#include <cstring>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {

BufferPool::~BufferPool() {
  release();
}

int BufferPool::find_or_add(const std::string& name) {
  const auto [it, inserted] = by_name_.try_emplace(name, static_cast<int>(entries_.size()));
  if (inserted) {
    Entry e;
    e.name = name;
    entries_.push_back(std::move(e));
  }
  return it->second;
}

int BufferPool::request(const std::string& name, std::int64_t bytes, Fill fill) {
  const bool is_new = by_name_.count(name) == 0;
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  PARATWIN_ASSERT(is_new || e.fill == fill, "scratch buffer {} requested with two fills", name);
  e.fill = fill;
  e.bytes = std::max(e.bytes, bytes);
  return id;
}

void BufferPool::grow(int id, std::int64_t bytes) {
  auto& e = entries_[static_cast<std::size_t>(id)];
  PARATWIN_ASSERT(!e.is_random || e.bytes >= bytes, "buffer {} of {} bytes is too small for {}", e.name, e.bytes,
                  bytes);
  e.bytes = std::max(e.bytes, bytes);
}

int BufferPool::random(const std::string& name, const Random& init) {
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  const std::int64_t bytes = init.rows * init.cols * (init.fp32 ? 4 : (init.fp8 ? 1 : 2));
  if (e.is_random) {
    PARATWIN_ASSERT(e.bytes == bytes, "random tensor {} requested with two sizes", name);
    return id;
  }
  e.is_random = true;
  e.init = init;
  e.bytes = std::max(e.bytes, bytes);
  return id;
}

int BufferPool::ints(const std::string& name, std::vector<int> values) {
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  if (!e.host_ints.empty()) {
    PARATWIN_ASSERT(e.host_ints == values, "int table {} requested with two contents", name);
    return id;
  }
  e.bytes = std::max(e.bytes, static_cast<std::int64_t>(values.size() * sizeof(int)));
  e.host_ints = std::move(values);
  return id;
}

int BufferPool::pointer_table(std::vector<GroupedGemm::Address> entries) {
  table_addresses_.push_back(std::move(entries));
  return static_cast<int>(table_addresses_.size()) - 1;
}

int BufferPool::grouped_kernel_tables(std::shared_ptr<const GroupedGemm> gemm, int table) {
  PARATWIN_ASSERT(table >= 0 && table < static_cast<int>(table_addresses_.size()), "pointer table {}", table);
  KernelTablesEntry e;
  e.gemm = std::move(gemm);
  e.table = table;
  kernel_tables_.push_back(std::move(e));
  return static_cast<int>(kernel_tables_.size()) - 1;
}

// The block's size: one tensor map per non-empty group's W and X (grouped_gemm_kernel.hpp), the pointer table, the
// schedule. Maps first: they need 64-byte alignment, which cudaMalloc's 256 gives; every part stays 8-byte aligned.
std::int64_t BufferPool::kernel_tables_bytes(const KernelTablesEntry& e, std::size_t pointers) {
  if (!e.gemm->kernel_supported() || e.gemm->groups_in_call() == 0) return 0;
  const auto maps = static_cast<std::size_t>(2 * e.gemm->groups_in_call());
  return static_cast<std::int64_t>(maps * sizeof(CUtensorMap) + pointers * sizeof(void*) +
                                   e.gemm->kernel_schedule().size() * sizeof(int));
}

void BufferPool::make_kernel_tables(KernelTablesEntry& e, cudaStream_t stream) {
  const auto& pointers = tables_[static_cast<std::size_t>(e.table)];
  const auto maps = e.gemm->kernel_tensor_maps(pointers.data());
  if (maps.empty()) return;  // no kernel for these operands: the launch runs another method
  const auto& schedule = e.gemm->kernel_schedule();
  const std::size_t maps_bytes = maps.size() * sizeof(CUtensorMap);
  const std::size_t pointers_bytes = pointers.size() * sizeof(void*);
  const auto bytes = static_cast<std::size_t>(kernel_tables_bytes(e, pointers.size()));
  PARATWIN_ASSERT(bytes == maps_bytes + pointers_bytes + schedule.size() * sizeof(int), "{} tensor maps", maps.size());
  e.staging.resize(bytes);
  std::memcpy(e.staging.data(), maps.data(), maps_bytes);
  std::memcpy(e.staging.data() + maps_bytes, pointers.data(), pointers_bytes);
  std::memcpy(e.staging.data() + maps_bytes + pointers_bytes, schedule.data(), schedule.size() * sizeof(int));
  const auto err = cudaMalloc(&e.block, bytes);
  if (err != cudaSuccess) {
    fail("cudaMalloc of {} bytes for a grouped GEMM's device tables failed: {}", bytes, cudaGetErrorString(err));
  }
  PARATWIN_CUDA_CHECK(cudaMemcpyAsync(e.block, e.staging.data(), bytes, cudaMemcpyHostToDevice, stream));
  auto* block = static_cast<unsigned char*>(e.block);
  e.device.tensor_maps = reinterpret_cast<const CUtensorMap*>(block);
  e.device.pointers = reinterpret_cast<void* const*>(block + maps_bytes);
  e.device.schedule = reinterpret_cast<const int*>(block + maps_bytes + pointers_bytes);
}

std::int64_t BufferPool::total_bytes() const {
  std::int64_t total = 0;
  for (const auto& e : entries_) total += (e.bytes + 255) / 256 * 256;
  for (const auto& e : kernel_tables_) {
    if (allocated_ && e.block == nullptr) continue;  // no tensor maps for its operands: nothing was allocated
    const auto pointers = table_addresses_[static_cast<std::size_t>(e.table)].size();
    total += (kernel_tables_bytes(e, pointers) + 255) / 256 * 256;
  }
  return total;
}

void BufferPool::allocate(cudaStream_t stream) {
  for (auto& e : entries_) {
    const auto bytes = static_cast<std::size_t>(std::max<std::int64_t>(e.bytes, 16));
    const auto err = cudaMalloc(&e.ptr, bytes);
    if (err != cudaSuccess) {
      fail("cudaMalloc of {} bytes for buffer '{}' failed: {}", bytes, e.name, cudaGetErrorString(err));
    }
    PARATWIN_CUDA_CHECK(cudaMemsetAsync(e.ptr, 0, bytes, stream));
    if (!e.host_ints.empty()) {
      PARATWIN_CUDA_CHECK(
          cudaMemcpyAsync(e.ptr, e.host_ints.data(), e.host_ints.size() * sizeof(int), cudaMemcpyHostToDevice, stream));
    }
  }
  tables_.clear();  // every buffer has its address now
  for (const auto& addresses : table_addresses_) {
    auto& table = tables_.emplace_back();
    for (const auto& a : addresses) table.push_back(static_cast<char*>(ptr(a.buffer)) + a.offset_bytes);
  }
  for (auto& e : kernel_tables_) make_kernel_tables(e, stream);
  allocated_ = true;
  // Activations and scratch start as seeded random bf16 (or fp8, or positive fp32 scales), never zeros (zeros make
  // GEMMs faster than real data); index tables and seeded tensors are written below.
  std::uint64_t k = 0x5eed;
  for (auto& e : entries_) {
    ++k;
    if (e.is_random || !e.host_ints.empty() || e.bytes < 2) continue;
    switch (e.fill) {
      case Fill::kBf16:
        launch_fill_random(e.ptr, false, 1, e.bytes / 2, 0, nullptr, e.bytes / 2, k, 1.0f, 0.0f, stream);
        break;
      case Fill::kFp8:
        launch_fill_random_fp8(e.ptr, e.bytes, k, 1.0f, stream);
        break;
      case Fill::kScaleFp32:
        launch_fill_random(e.ptr, true, 1, e.bytes / 4, 0, nullptr, e.bytes / 4, k, 0.5f, 1.0f, stream);
        break;
    }
  }
  for (auto& e : entries_) {
    if (!e.is_random) continue;
    const int* map = e.init.col_map >= 0 ? static_cast<const int*>(ptr(e.init.col_map)) : nullptr;
    if (e.init.fp8 && !e.init.fp32) {
      launch_fill_random_fp8(e.ptr, e.init.rows * e.init.cols, e.init.seed, e.init.scale, stream);
      continue;
    }
    launch_fill_random(e.ptr, e.init.fp32, e.init.rows, e.init.cols, e.init.row_offset, map, e.init.full_cols,
                       e.init.seed, e.init.scale, e.init.bias, stream);
  }
  PARATWIN_CUDA_CHECK(cudaGetLastError());
  PARATWIN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (auto& e : entries_) std::vector<int>().swap(e.host_ints);
  for (auto& e : kernel_tables_) std::vector<unsigned char>().swap(e.staging);
}

void BufferPool::release() {
  for (auto& e : entries_) {
    if (e.ptr != nullptr) cudaFree(e.ptr);
    e.ptr = nullptr;
  }
  for (auto& e : kernel_tables_) {
    if (e.block != nullptr) cudaFree(e.block);
    e.block = nullptr;
    e.device = {};
  }
  allocated_ = false;
}

}  // namespace paratwin::cuda
