// The fp8 GEMM (fp8_gemm.hpp) against a double-precision host reference that dequantises the same fp8 values with
// the same scales: block scaling (1×128 activation groups, 128×128 weight blocks, in cuBLASLt's scale layouts) and
// per-tensor scaling, on fresh random fp8 operands and random positive scales, into a poisoned output; shapes with m
// not a multiple of 4, 16 or 128 (block scaling runs m rounded up to 4 rows), n not a multiple of 128, and k/128 not a
// multiple of 4 (the padded weight-scale rows).
// Plus the errors for a k the scaling cannot take, and the MoE experts' fp8 GEMMs on concurrent side streams and on the
// backend's persistent fp8 kernel.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/fp8_grouped_gemm.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::cuda;

namespace {

using i64 = std::int64_t;

// e4m3 (bias 7, no infinities, S.1111.111 is NaN) to its exact value.
double e4m3_value(std::uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF;
  const int mantissa = bits & 0x7;
  const double magnitude =
      exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return (bits & 0x80) != 0 ? -magnitude : magnitude;
}

// Random e4m3 values of magnitude 2^-4 … 2^1 with either sign (never NaN).
std::vector<std::uint8_t> random_fp8(i64 count, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> exponent(3, 8), mantissa(0, 7), sign(0, 1);
  std::vector<std::uint8_t> v(static_cast<std::size_t>(count));
  for (auto& b : v) b = static_cast<std::uint8_t>(sign(rng) << 7 | exponent(rng) << 3 | mantissa(rng));
  return v;
}

std::vector<float> random_scales(i64 count, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> scale(0.25f, 4.0f);
  std::vector<float> v(static_cast<std::size_t>(count));
  for (auto& s : v) s = scale(rng);
  return v;
}

float bf16_value(std::uint16_t raw) {
  const std::uint32_t bits = static_cast<std::uint32_t>(raw) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
void* upload(const std::vector<T>& host) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, std::max<std::size_t>(host.size() * sizeof(T), 16)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return p;
}

struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  static constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
  Lt() {
    REQUIRE(cublasLtCreate(&handle) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(cudaMalloc(&workspace, kWorkspaceBytes) == cudaSuccess);
  }
  ~Lt() {
    cudaFree(workspace);
    cublasLtDestroy(handle);
  }
  Lt(const Lt&) = delete;
  Lt& operator=(const Lt&) = delete;
};

// Runs Y = X·Wᵀ on fresh random operands and compares every element with the host's dequantised product:
// |y − ref| ≤ 1e-2·|ref| + 2e-3·Σ|terms| (bf16 output rounding plus fp32 accumulation), and the relative L2 error of
// the whole output ≤ 1e-2. Scales in [0.25, 4] make a scale applied to the wrong block miss both by far.
void check_fp8_gemm(Fp8Scaling scaling, i64 m, i64 n, i64 k, std::uint64_t seed) {
  CAPTURE(m, n, k, scaling == Fp8Scaling::kBlock);
  std::mt19937_64 rng(seed);
  const i64 rows = fp8_padded_rows(scaling, m);  // what the GEMM reads and writes (block scaling: m rounded up to 4)
  const auto x = random_fp8(rows * k, rng);
  const auto w = random_fp8(n * k, rng);
  const auto x_scale = random_scales(fp8_activation_scale_count(scaling, m, k), rng);
  const auto w_scale = random_scales(fp8_weight_scale_count(scaling, n, k), rng);
  const bool block = scaling == Fp8Scaling::kBlock;
  const i64 k_groups = k / kFp8ScaleBlock;
  const i64 w_ld = (k_groups + 3) / 4 * 4;  // the weight scales' row length (k-blocks, padded to 4)
  const auto xs = [&](i64 row, i64 col) {
    return static_cast<double>(block ? x_scale[static_cast<std::size_t>(col / kFp8ScaleBlock * rows + row)]
                                     : x_scale[0]);
  };
  const auto ws = [&](i64 row, i64 col) {
    return static_cast<double>(
        block ? w_scale[static_cast<std::size_t>(row / kFp8ScaleBlock * w_ld + col / kFp8ScaleBlock)] : w_scale[0]);
  };

  void* dx = upload(x);
  void* dw = upload(w);
  void* dxs = upload(x_scale);
  void* dws = upload(w_scale);
  void* dy = nullptr;
  const auto y_bytes = static_cast<std::size_t>(rows * n * 2);
  REQUIRE(cudaMalloc(&dy, y_bytes) == cudaSuccess);
  // Poison: 0xFF bytes are NaN in bf16, so an unwritten output element fails the comparison.
  REQUIRE(cudaMemset(dy, 0xFF, y_bytes) == cudaSuccess);

  Lt lt;
  Fp8Gemm gemm(scaling, n, k);
  const Fp8GemmLaunch launch{lt.handle, lt.workspace, Lt::kWorkspaceBytes, nullptr};
  const Fp8GemmOperands operands{dx, static_cast<const float*>(dxs), dw, static_cast<const float*>(dws), dy};
  gemm.run(launch, operands, m);
  gemm.run(launch, operands, m);  // the second call reuses the first one's plan
  CHECK(gemm.cached_plans() == 1);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<std::uint16_t> raw(static_cast<std::size_t>(rows * n));
  REQUIRE(cudaMemcpy(raw.data(), dy, y_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);

  std::vector<double> xv(x.size()), wv(w.size());
  for (std::size_t i = 0; i < x.size(); ++i) xv[i] = e4m3_value(x[i]);
  for (std::size_t i = 0; i < w.size(); ++i) wv[i] = e4m3_value(w[i]);
  double err2 = 0, ref2 = 0;
  i64 bad = 0;
  for (i64 r = 0; r < m; ++r) {
    for (i64 c = 0; c < n; ++c) {
      double ref = 0, magnitude = 0;
      for (i64 j = 0; j < k; ++j) {
        const double term =
            xv[static_cast<std::size_t>(r * k + j)] * xs(r, j) * wv[static_cast<std::size_t>(c * k + j)] * ws(c, j);
        ref += term;
        magnitude += std::abs(term);
      }
      const double got = bf16_value(raw[static_cast<std::size_t>(r * n + c)]);
      const double err = std::abs(got - ref);
      if (!(err <= 1e-2 * std::abs(ref) + 2e-3 * magnitude)) {
        if (bad < 5) UNSCOPED_INFO("y[" << r << "][" << c << "] = " << got << ", reference " << ref);
        ++bad;
      }
      err2 += (got - ref) * (got - ref);
      ref2 += ref * ref;
    }
  }
  const double relative_l2 = std::sqrt(err2 / ref2);
  CAPTURE(relative_l2);
  CHECK(bad == 0);
  CHECK(relative_l2 <= 1e-2);
  for (void* p : {dx, dw, dxs, dws, dy}) cudaFree(p);
}

// The double-precision host product of fp8 expert GEMMs (Fp8GroupedGemm's operands and scale layouts) and the check
// of a bf16 output against it: |y − ref| ≤ 1e-2·|ref| + 2e-3·Σ|terms| for every real row.
struct GroupedReference {
  i64 n = 0;
  std::vector<double> ref, magnitude;

  GroupedReference(const std::vector<i64>& group_rows, i64 n_cols, i64 k, const std::vector<std::uint8_t>& x,
                   const std::vector<std::uint8_t>& w, const std::vector<float>& x_scale,
                   const std::vector<float>& w_scale)
      : n(n_cols) {
    const i64 k_groups = k / kFp8ScaleBlock, w_ld = (k_groups + 3) / 4 * 4;
    const i64 w_scales = fp8_weight_scale_count(Fp8Scaling::kBlock, n, k);
    std::vector<double> xv(x.size()), wv(w.size());
    for (std::size_t i = 0; i < x.size(); ++i) xv[i] = e4m3_value(x[i]);
    for (std::size_t i = 0; i < w.size(); ++i) wv[i] = e4m3_value(w[i]);
    i64 rows = 0;
    for (const i64 m : group_rows) rows += m;
    ref.resize(static_cast<std::size_t>(rows * n));
    magnitude.resize(ref.size());
    i64 row = 0, scale_row = 0;
    for (std::size_t g = 0; g < group_rows.size(); ++g) {
      const i64 m = group_rows[g], m4 = fp8_padded_rows(Fp8Scaling::kBlock, m), gi = static_cast<i64>(g);
      for (i64 r = 0; r < m; ++r) {
        for (i64 c = 0; c < n; ++c) {
          double sum = 0, size = 0;
          for (i64 j = 0; j < k; ++j) {
            const double xs = x_scale[static_cast<std::size_t>(scale_row * k_groups + j / kFp8ScaleBlock * m4 + r)];
            const double ws =
                w_scale[static_cast<std::size_t>(gi * w_scales + c / kFp8ScaleBlock * w_ld + j / kFp8ScaleBlock)];
            const double term = xv[static_cast<std::size_t>((row + r) * k + j)] * xs *
                                wv[static_cast<std::size_t>((gi * n + c) * k + j)] * ws;
            sum += term;
            size += std::abs(term);
          }
          ref[static_cast<std::size_t>((row + r) * n + c)] = sum;
          magnitude[static_cast<std::size_t>((row + r) * n + c)] = size;
        }
      }
      row += m;
      scale_row += m4;
    }
  }

  // Elements of `raw` (bf16, the real rows first) off the reference; reports the first 5.
  [[nodiscard]] i64 mismatches(const std::vector<std::uint16_t>& raw) const {
    i64 bad = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double got = bf16_value(raw[i]);
      if (!(std::abs(got - ref[i]) <= 1e-2 * std::abs(ref[i]) + 2e-3 * magnitude[i])) {
        if (bad < 5)
          UNSCOPED_INFO("y row " << static_cast<i64>(i) / n << " col " << static_cast<i64>(i) % n << " = " << got
                                 << ", reference " << ref[i]);
        ++bad;
      }
    }
    return bad;
  }
};

}  // namespace

TEST_CASE("fp8 GEMM with block scales equals the dequantised host product", "[gpu][fp8]") {
  check_fp8_gemm(Fp8Scaling::kBlock, 256, 256, 384, 11);   // k/128 = 3: weight-scale rows padded to 4
  check_fp8_gemm(Fp8Scaling::kBlock, 77, 576, 512, 12);    // m not a multiple of 16, n not a multiple of 128
  check_fp8_gemm(Fp8Scaling::kBlock, 13, 128, 128, 13);    // one k-block, fewer rows than a tile
  check_fp8_gemm(Fp8Scaling::kBlock, 300, 2112, 640, 14);  // DeepSeek-V3.2's qkv_a_proj width (16.5 blocks), k/128 = 5
}

TEST_CASE("fp8 GEMM with per-tensor scales equals the dequantised host product", "[gpu][fp8]") {
  check_fp8_gemm(Fp8Scaling::kPerTensor, 77, 256, 144, 21);  // k a multiple of 16, not of 128
  check_fp8_gemm(Fp8Scaling::kPerTensor, 300, 640, 512, 22);
}

TEST_CASE("fp8 GEMM refuses a k its scaling cannot take", "[gpu][fp8]") {
  CHECK_THROWS_WITH(Fp8Gemm(Fp8Scaling::kBlock, 256, 200),
                    Catch::Contains("k = 200") && Catch::Contains("multiple of 128"));
  CHECK_THROWS_WITH(Fp8Gemm(Fp8Scaling::kBlock, 256, 144), Catch::Contains("multiple of 128"));
  CHECK_THROWS_WITH(Fp8Gemm(Fp8Scaling::kPerTensor, 256, 100),
                    Catch::Contains("k = 100") && Catch::Contains("multiple of 16"));
  CHECK_THROWS_AS(Fp8Gemm(Fp8Scaling::kBlock, 0, 128), Error);
}

// The MoE experts' fp8 GEMMs (fp8_grouped_gemm.hpp) on 4 side streams: ragged groups (rows not multiples of 4, so each
// call writes up to 3 rows into the next groups'), empty groups, and run boundaries where the next stream's first
// groups wait for the previous stream's tail; every real row against the host's dequantised product, into a poisoned
// output, several times, and bit for bit equal to the same GEMMs run in group order on one stream.
TEST_CASE("fp8 expert GEMMs on side streams equal the host product, ragged and empty groups included", "[gpu][fp8]") {
  // Runs of this plan (cuda_plan::plan_fp8_group_streams): [0, 4) with no tail (128 rows end it); [4, 8) with the
  // tail 77, 61, whose 3 extra rows cover the empty group 8, all of group 9 and a row of group 10, the next run's
  // head; [8, 16) with the tail 33, 7, 1 writing into the last run's first group.
  const std::vector<i64> group_rows{5, 0, 3, 128, 24, 0, 77, 61, 0, 2, 9, 60, 0, 33, 7, 1, 40, 2, 45, 3, 0, 52, 6};
  const i64 n = 256, k = 384;
  Fp8GroupedGemm gemm(group_rows, n, k);
  const GemmStreams side(4, Lt::kWorkspaceBytes);
  const auto& runs = gemm.stream_runs(side.size());
  REQUIRE(runs.size() == 4);
  CHECK(!runs[1].waits_for_previous);
  CHECK((runs[1].tail == 6 && runs[2].waits_for_previous && runs[2].tail == 13 && runs[3].waits_for_previous));

  std::mt19937_64 rng(31);
  const i64 rows = gemm.rows(), groups = static_cast<i64>(group_rows.size());
  const i64 w_scales = gemm.weight_scale_count();
  const auto x = random_fp8((rows + 3) * k, rng);
  const auto w = random_fp8(groups * n * k, rng);
  const auto x_scale = random_scales(gemm.activation_scale_count(), rng);
  const auto w_scale = random_scales(groups * w_scales, rng);
  void* dx = upload(x);
  void* dw = upload(w);
  void* dxs = upload(x_scale);
  void* dws = upload(w_scale);
  void* dy = nullptr;
  const auto y_bytes = static_cast<std::size_t>((rows + 3) * n * 2);
  REQUIRE(cudaMalloc(&dy, y_bytes) == cudaSuccess);
  Lt lt;
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  const Fp8GroupedGemm::Operands operands{dx, static_cast<const float*>(dxs), dw, static_cast<const float*>(dws), dy};
  const auto run = [&](const GemmStreams* streams) {
    REQUIRE(cudaMemset(dy, 0xFF, y_bytes) == cudaSuccess);  // NaN in bf16: an unwritten element fails
    gemm.run({lt.handle, lt.workspace, Lt::kWorkspaceBytes, stream, streams}, operands);
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    std::vector<std::uint16_t> raw(static_cast<std::size_t>(rows * n));
    REQUIRE(cudaMemcpy(raw.data(), dy, raw.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
    return raw;
  };
  const auto in_order = run(nullptr);

  const GroupedReference reference(group_rows, n, k, x, w, x_scale, w_scale);
  const auto check = [&](const std::vector<std::uint16_t>& raw) { return reference.mismatches(raw); };
  CHECK(check(in_order) == 0);
  for (int trial = 0; trial < 5; ++trial) {
    CAPTURE(trial);
    const auto concurrent = run(&side);
    CHECK(check(concurrent) == 0);
    CHECK(concurrent == in_order);
  }
  cudaStreamDestroy(stream);
  for (void* p : {dx, dw, dxs, dws, dy}) cudaFree(p);
}

// The backend's persistent fp8 kernel (fp8_grouped_gemm_kernel.hpp) through Fp8GroupedGemm::run_kernel: ragged groups
// around its 64- and 128-row tiles (0, 1, 3, 63–65, 127–129, 300 rows), 3 column tiles of 256 (an odd count: pairs
// that share X, and the zero partner of an unpaired tile; 6 weight-scale blocks) and 1, k/128 = 3 (weight-scale rows
// padded to 4) and 5; every element against the host's dequantised product in a poisoned output, the 3 rows past the
// last group left unwritten, bit for bit the same over repeated launches (a race would move it); a scale array off
// the 16-byte grid refused.
TEST_CASE("fp8 grouped kernel equals the host product with ragged and empty groups", "[gpu][fp8]") {
  const std::vector<i64> group_rows{3, 0, 65, 1, 128, 300, 0, 63, 127, 64, 129, 2, 0};
  for (const auto& [n, k, seed] : {std::tuple<i64, i64, std::uint64_t>{768, 384, 41}, {256, 640, 42}}) {
    CAPTURE(n, k);
    Fp8GroupedGemm gemm(group_rows, n, k);
    REQUIRE(!gemm.kernel_table().empty());
    std::mt19937_64 rng(seed);
    const i64 rows = gemm.rows(), groups = static_cast<i64>(group_rows.size());
    const auto x = random_fp8((rows + 3) * k, rng);
    const auto w = random_fp8(groups * n * k, rng);
    const auto x_scale = random_scales(gemm.activation_scale_count(), rng);
    const auto w_scale = random_scales(groups * gemm.weight_scale_count(), rng);
    void* dx = upload(x);
    void* dw = upload(w);
    void* dxs = upload(x_scale);
    void* dws = upload(w_scale);
    void* dtable = upload(gemm.kernel_table());
    void* dy = nullptr;
    const auto y_bytes = static_cast<std::size_t>((rows + 3) * n * 2);
    REQUIRE(cudaMalloc(&dy, y_bytes) == cudaSuccess);
    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
    Fp8GroupedGemm::Launch launch;
    launch.stream = stream;
    launch.device_kernel_table = static_cast<const int*>(dtable);
    const Fp8GroupedGemm::Operands operands{dx, static_cast<const float*>(dxs), dw, static_cast<const float*>(dws), dy};
    const auto run = [&] {
      REQUIRE(cudaMemset(dy, 0xFF, y_bytes) == cudaSuccess);  // NaN in bf16: an unwritten element fails
      REQUIRE(gemm.run_kernel(launch, operands));
      REQUIRE(cudaGetLastError() == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
      std::vector<std::uint16_t> raw(static_cast<std::size_t>((rows + 3) * n));
      REQUIRE(cudaMemcpy(raw.data(), dy, y_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
      return raw;
    };
    const GroupedReference reference(group_rows, n, k, x, w, x_scale, w_scale);
    const auto first = run();
    CHECK(reference.mismatches(first) == 0);
    i64 written_past_end = 0;
    for (std::size_t i = static_cast<std::size_t>(rows * n); i < first.size(); ++i) {
      if (first[i] != 0xFFFF) ++written_past_end;
    }
    CHECK(written_past_end == 0);
    for (int trial = 0; trial < 3; ++trial) {
      CAPTURE(trial);
      CHECK(run() == first);
    }
    // The kernel copies the scales with the bulk copy engine (16-byte aligned): an unaligned scale array is refused.
    const Fp8GroupedGemm::Operands unaligned_scales{dx, static_cast<const float*>(dxs) + 1, dw,
                                                    static_cast<const float*>(dws), dy};
    CHECK_FALSE(gemm.run_kernel(launch, unaligned_scales));
    cudaStreamDestroy(stream);
    for (void* p : {dx, dw, dxs, dws, dtable, dy}) cudaFree(p);
  }
}
