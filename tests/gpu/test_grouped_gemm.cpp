// The MoE expert GEMMs (grouped_gemm.hpp) against a float reference on the host, on seeded random operands and a
// poisoned output, with ragged groups including empty ones, by each launch method: concurrent side streams, the
// persistent kernel (and its fallbacks where it does not support n × k or Y is off the 16-byte rule), the one grouped
// cuBLAS call, the batch of whole chunks, the sequential loop, the strided batched call (and its fallback where the
// groups differ or are not equally spaced). The operand tables come from the BufferPool as in the
// binder.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda/op_binder.hpp"

using namespace paratwin;
using namespace paratwin::cuda;

namespace {

std::vector<float> read_bf16(const void* p, std::int64_t count) {
  std::vector<std::uint16_t> raw(static_cast<std::size_t>(count));
  REQUIRE(cudaMemcpy(raw.data(), p, raw.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  std::vector<float> out(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(raw[i]) << 16;
    std::memcpy(&out[i], &bits, sizeof(float));
  }
  return out;
}

struct Blas {
  cublasHandle_t handle = nullptr;
  Blas() { REQUIRE(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS); }
  ~Blas() { cublasDestroy(handle); }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
};

// Runs the grouped GEMM of `group_rows` × n × k by `method` on fresh random data and compares every output row with
// the host's float product. The operand tables come from the BufferPool as the binder makes them: the host pointer
// table, and the kernel's device tables (grouped_kernel_tables). Y starts `y_offset_bytes` into its buffer.
void check_grouped(const std::vector<std::int64_t>& group_rows, std::int64_t n, std::int64_t k,
                   GroupedGemmMethod method, std::uint64_t seed, bool runs_as_asked = true,
                   std::int64_t chunk_rows = kGroupedChunkRows, std::int64_t y_offset_bytes = 0) {
  std::int64_t rows = 0;
  for (const auto r : group_rows) rows += r;
  const auto groups = static_cast<std::int64_t>(group_rows.size());
  BufferPool pool;
  BufferPool::Random x_init;
  x_init.rows = rows;
  x_init.cols = k;
  x_init.full_cols = k;
  x_init.seed = seed;
  const int x = pool.random("x", x_init);
  BufferPool::Random w_init = x_init;  // all experts' weights in one buffer, k × n each
  w_init.rows = groups * k;
  w_init.cols = n;
  w_init.full_cols = n;
  w_init.seed = seed + 1;
  w_init.scale = 1.0f / std::sqrt(static_cast<float>(k));
  const int w = pool.random("w", w_init);
  const int y_buffer = pool.request("y", y_offset_bytes + rows * n * 2);
  auto gemm = std::make_shared<const GroupedGemm>(group_rows, n, k, chunk_rows);
  GroupedGemm::Operands operands{x, y_buffer, {}};
  for (std::int64_t g = 0; g < groups; ++g) operands.weights.push_back({w, g * k * n * 2});
  auto addresses = gemm->operand_addresses(operands);
  for (auto& a : addresses) {
    if (a.buffer == y_buffer) a.offset_bytes += y_offset_bytes;
  }
  const int table = pool.pointer_table(addresses);
  const int kernel_tables = pool.grouped_kernel_tables(gemm, table);
  const auto bytes_before = pool.total_bytes();
  pool.allocate(nullptr);
  void* const y = static_cast<char*>(pool.ptr(y_buffer)) + y_offset_bytes;
  // Poison: 0xFF bytes are NaN in bf16, so an unwritten output element fails the comparison.
  REQUIRE(cudaMemset(y, 0xFF, static_cast<std::size_t>(rows * n * 2)) == cudaSuccess);
  const auto& device = pool.kernel_tables(kernel_tables);
  // The pool's operands are aligned unless Y is moved off the 16-byte rule.
  CHECK(device.ready() == (gemm->kernel_supported() && gemm->groups_in_call() > 0 && y_offset_bytes % 16 == 0));
  // The pool's bytes: before allocate they count the kernel's tables where the kernel supports the shape; after it,
  // only the tables it made (none for operands off the 16-byte rule).
  if (gemm->kernel_supported() && gemm->groups_in_call() > 0 && !device.ready()) {
    CHECK(pool.total_bytes() < bytes_before);
  } else {
    CHECK(pool.total_bytes() == bytes_before);
  }

  Blas blas;
  const GemmStreams side(3);
  GroupedGemm::Launch launch;
  launch.blas = blas.handle;
  launch.side = &side;
  launch.host_table = pool.pointers(table);
  launch.device_table = device.pointers;
  launch.device_schedule = device.schedule;
  launch.device_tensor_maps = device.tensor_maps;
  void* table_copy = nullptr;  // kCublasGrouped's device table where the pool made no kernel tables
  if (launch.device_table == nullptr) {
    const auto table_bytes = addresses.size() * sizeof(void*);
    REQUIRE(cudaMalloc(&table_copy, std::max<std::size_t>(table_bytes, 8)) == cudaSuccess);
    REQUIRE(cudaMemcpy(table_copy, pool.pointers(table), table_bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    launch.device_table = static_cast<void* const*>(table_copy);
  }
  // cuBLAS ≥ 12.5 here: the method asked for is the one that runs, not the fallback, unless the kernel does not
  // support n × k or its operands.
  CHECK(gemm->run(launch, method) == runs_as_asked);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cudaFree(table_copy);

  const auto xs = read_bf16(pool.ptr(x), rows * k);
  const auto ws = read_bf16(pool.ptr(w), groups * k * n);
  const auto ys = read_bf16(y, rows * n);
  std::int64_t row = 0;
  std::vector<double> ref(static_cast<std::size_t>(n));
  for (std::int64_t g = 0; g < groups; ++g) {
    double diff = 0, norm = 0;
    std::int64_t non_finite = 0;  // unwritten (poisoned) or overflowed outputs
    for (std::int64_t r = row; r < row + group_rows[static_cast<std::size_t>(g)]; ++r) {
      std::fill(ref.begin(), ref.end(), 0.0);
      for (std::int64_t i = 0; i < k; ++i) {  // row r of X times W_g, W_g's rows in memory order
        const double xv = xs[static_cast<std::size_t>(r * k + i)];
        const float* w_row = &ws[static_cast<std::size_t>(g * k * n + i * n)];
        for (std::int64_t j = 0; j < n; ++j) ref[static_cast<std::size_t>(j)] += xv * w_row[j];
      }
      for (std::int64_t j = 0; j < n; ++j) {
        const float got = ys[static_cast<std::size_t>(r * n + j)];
        if (!std::isfinite(got)) ++non_finite;
        const double want = ref[static_cast<std::size_t>(j)];
        diff += (got - want) * (got - want);
        norm += want * want;
      }
    }
    row += group_rows[static_cast<std::size_t>(g)];
    INFO("group " << g << " of " << group_rows[static_cast<std::size_t>(g)] << " rows");
    CHECK(non_finite == 0);
    CHECK(std::sqrt(diff / std::max(norm, 1e-30)) < 1e-2);  // bf16 output: ~2e-3
  }
}

}  // namespace

TEST_CASE("grouped GEMM equals the float product per expert, with ragged and empty groups", "[gpu]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  REQUIRE(devices >= 1);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  const std::vector<std::int64_t> ragged{37, 0, 128, 1, 0, 300, 64, 0};
  SECTION("the persistent kernel falls back to side streams where it does not support n x k") {
    CHECK_FALSE(GroupedGemm(ragged, 192, 160).kernel_supported());
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kPersistentKernel, 10, false);
  }
  SECTION("the persistent kernel falls back to side streams where Y is not 16-byte aligned, its tables not counted") {
    REQUIRE(GroupedGemm(ragged, 256, 64).kernel_supported());
    check_grouped(ragged, 256, 64, GroupedGemmMethod::kPersistentKernel, 18, false, kGroupedChunkRows, 2);
    check_grouped(ragged, 256, 64, GroupedGemmMethod::kPersistentKernel, 19, false, kGroupedChunkRows, 8);
    check_grouped(ragged, 256, 64, GroupedGemmMethod::kPersistentKernel, 20, true, kGroupedChunkRows, 16);
  }
  SECTION("concurrent GEMMs on side streams") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kConcurrent, 11);
  }
  SECTION("one grouped cuBLAS call") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kCublasGrouped, 12);
  }
  SECTION("whole chunks batched, remainders on side streams") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kChunkedBatched, 15);
    check_grouped({0, 64, 1, 200, 0, 63, 129}, 256, 64, GroupedGemmMethod::kChunkedBatched, 16, true, 64);
    check_grouped({5, 0, 17}, 256, 64, GroupedGemmMethod::kChunkedBatched, 17, true, 64);  // no whole chunk
  }
  SECTION("one strided batched call where the groups are equal and equally spaced, else side streams") {
    REQUIRE(GroupedGemm({96, 96, 96}, 512, 128).equal_groups());
    check_grouped({96, 96, 96, 96, 96, 96}, 512, 128, GroupedGemmMethod::kStridedBatched, 22);  // MLA absorb's form
    check_grouped({0, 70, 70, 70}, 128, 512, GroupedGemmMethod::kStridedBatched, 23);  // a leading empty group
    check_grouped({33}, 192, 160, GroupedGemmMethod::kStridedBatched, 24);
    check_grouped({40, 40}, 64, 64, GroupedGemmMethod::kStridedBatched, 25, true, kGroupedChunkRows, 2);
    CHECK_FALSE(GroupedGemm(ragged, 192, 160).equal_groups());
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kStridedBatched, 26, false);
    // Equal rows, but the empty group leaves a gap between two weights: the non-empty groups' W are not equally spaced.
    REQUIRE(GroupedGemm({64, 0, 64, 64}, 256, 64).equal_groups());
    check_grouped({64, 0, 64, 64}, 256, 64, GroupedGemmMethod::kStridedBatched, 27, false);
  }
  SECTION("the sequential loop") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kSequential, 13);
  }
  SECTION("leading and trailing empty groups, a wide n, more groups than side streams") {
    check_grouped({0, 0, 5, 517, 0, 9, 33, 2, 70}, 1032, 64, GroupedGemmMethod::kConcurrent, 14);
  }
  SECTION("every group empty: nothing to run") {
    const GroupedGemm gemm({0, 0, 0}, 64, 64);
    CHECK(gemm.groups_in_call() == 0);
    Blas blas;
    GroupedGemm::Launch launch;
    launch.blas = blas.handle;
    CHECK(gemm.run(launch, GroupedGemmMethod::kConcurrent));
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  }
}

// The persistent kernel (grouped_gemm_kernel.hpp) at the sizes it supports: partial row blocks, groups of 0 and 1
// rows, a group of one whole tile and ones just under and over it, very different sizes side by side, experts of one
// row block at odd and even column-block counts, more tile pairs than the GPU runs clusters, and the zoo's MoE n × k
// (few rows each, so that the host reference stays quick).
TEST_CASE("persistent grouped GEMM kernel equals the float product per expert", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  constexpr auto kKernel = GroupedGemmMethod::kPersistentKernel;
  SECTION("one row, one column block, one k stage") {
    check_grouped({1}, 256, 64, kKernel, 21);
  }
  SECTION("ragged groups around the 128-row tile, empty ones between") {
    check_grouped({0, 1, 127, 128, 0, 129, 64, 65, 63, 0, 2, 300}, 512, 192, kKernel, 22);
  }
  SECTION("very different sizes side by side") {
    check_grouped({700, 1, 0, 3, 257, 0, 0, 33}, 768, 320, kKernel, 23);
  }
  SECTION("more tile pairs than clusters: each cluster walks many, the ring wraps within and across tiles") {
    // 300 groups of 0..210 rows (about 31,000 rows): ~300 pairs at one column block (each a zero partner or a pair of
    // row blocks) and ~750 at three, against at most 66 clusters on H200; 3 k stages, and 1 (fewer than the ring's).
    std::vector<std::int64_t> many(300);
    for (std::size_t g = 0; g < many.size(); ++g) many[g] = static_cast<std::int64_t>(g * 37 % 211);
    check_grouped(many, 256, 192, kKernel, 29);
    check_grouped(many, 768, 64, kKernel, 30);
  }
  SECTION("experts of one row block, column blocks not a multiple of 4") {
    // One-row-block experts run as shared-rows pairs (an odd last one with a zero partner); 5, 6 and 7 column blocks
    // (the zoo has 12, 16 or 28) were the empty-tile cases of the clusters of four (docs/performance.md).
    check_grouped({1, 64, 65, 127, 128, 0, 90}, 1280, 128, kKernel, 31);
    check_grouped({1, 200, 300, 128, 129, 450, 0, 40}, 1536, 64, kKernel, 32);
    check_grouped({256, 300, 5, 383}, 1792, 192, kKernel, 33);
  }
  SECTION("every group empty: nothing to run") {
    check_grouped({0, 0}, 256, 64, kKernel, 24);
  }
  SECTION("DeepSeek-V3.2 experts: gate_up 4096 x 7168 and down 7168 x 2048") {
    check_grouped({3, 0, 130}, 4096, 7168, kKernel, 25);
    check_grouped({1, 150, 0, 64}, 7168, 2048, kKernel, 26);
  }
  SECTION("Qwen3-235B-A22B experts: gate_up 3072 x 4096 and down 4096 x 1536") {
    check_grouped({0, 200, 1, 17}, 3072, 4096, kKernel, 27);
    check_grouped({129, 0, 5, 128}, 4096, 1536, kKernel, 28);
  }
}
