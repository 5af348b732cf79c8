// The MoE expert GEMMs (grouped_gemm.hpp) against a float reference on the host, on seeded random operands and a
// poisoned output, with ragged groups including empty ones, by each launch method: concurrent side streams (what the
// backend runs), the one grouped cuBLAS call, the sequential loop. The operand table comes from the BufferPool as in
// the binder.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
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
// the host's float product.
void check_grouped(const std::vector<std::int64_t>& group_rows, std::int64_t n, std::int64_t k,
                   GroupedGemmMethod method, std::uint64_t seed) {
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
  const int y = pool.request("y", rows * n * 2);
  const GroupedGemm gemm(group_rows, n, k);
  GroupedGemm::Operands operands{x, y, {}};
  for (std::int64_t g = 0; g < groups; ++g) operands.weights.push_back({w, g * k * n * 2});
  const int table = pool.pointer_table(gemm.operand_addresses(operands));
  pool.allocate(nullptr);
  // Poison: 0xFF bytes are NaN in bf16, so an unwritten output element fails the comparison.
  REQUIRE(cudaMemset(pool.ptr(y), 0xFF, static_cast<std::size_t>(rows * n * 2)) == cudaSuccess);
  const auto table_bytes = 3 * static_cast<std::size_t>(gemm.groups_in_call()) * sizeof(void*);
  void* device_table = nullptr;
  REQUIRE(cudaMalloc(&device_table, std::max<std::size_t>(table_bytes, 8)) == cudaSuccess);
  REQUIRE(cudaMemcpy(device_table, pool.pointers(table), table_bytes, cudaMemcpyHostToDevice) == cudaSuccess);

  Blas blas;
  const GemmStreams side(3);
  GroupedGemm::Launch launch;
  launch.blas = blas.handle;
  launch.side = &side;
  launch.device_table = static_cast<void* const*>(device_table);
  launch.host_table = pool.pointers(table);
  // cuBLAS ≥ 12.5 here: the method asked for is the one that runs, not the fallback.
  CHECK(gemm.run(launch, method));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cudaFree(device_table);

  const auto xs = read_bf16(pool.ptr(x), rows * k);
  const auto ws = read_bf16(pool.ptr(w), groups * k * n);
  const auto ys = read_bf16(pool.ptr(y), rows * n);
  std::int64_t row = 0;
  for (std::int64_t g = 0; g < groups; ++g) {
    double diff = 0, norm = 0;
    for (std::int64_t r = row; r < row + group_rows[static_cast<std::size_t>(g)]; ++r) {
      for (std::int64_t j = 0; j < n; ++j) {
        double ref = 0;
        for (std::int64_t i = 0; i < k; ++i) {
          ref += static_cast<double>(xs[static_cast<std::size_t>(r * k + i)]) *
                 ws[static_cast<std::size_t>(g * k * n + i * n + j)];
        }
        const float got = ys[static_cast<std::size_t>(r * n + j)];
        REQUIRE(std::isfinite(got));
        diff += (got - ref) * (got - ref);
        norm += ref * ref;
      }
    }
    row += group_rows[static_cast<std::size_t>(g)];
    INFO("group " << g << " of " << group_rows[static_cast<std::size_t>(g)] << " rows");
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
  SECTION("concurrent GEMMs on side streams") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kConcurrent, 11);
  }
  SECTION("one grouped cuBLAS call") {
    check_grouped(ragged, 192, 160, GroupedGemmMethod::kCublasGrouped, 12);
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
