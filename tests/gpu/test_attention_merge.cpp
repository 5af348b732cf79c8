// The ring CP merge of partial attention outputs (launch_attention_merge: fp32 partials with their log-sum-exps) and
// the final conversion to bf16 (launch_to_bf16), against float64 references on the host, on seeded random inputs with
// poisoned outputs: rows where one side or both saw no key (log-sum-exp −inf), the first merge (the running state
// holds NaN and must not be read), head dims on the four-wide path and off it (dim 6; a buffer 4 bytes off 16-byte
// alignment), and a bf16 count that is not a multiple of 4.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "tests/gpu/device_buffer.hpp"

using paratwin::test::DeviceBuffer;

namespace {

constexpr float kNoKeys = -std::numeric_limits<float>::infinity();

template <typename T>
void upload(void* dst, const std::vector<T>& v) {
  REQUIRE(cudaMemcpy(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
}
template <typename T>
std::vector<T> download(const void* src, std::size_t count) {
  std::vector<T> v(count);
  REQUIRE(cudaMemcpy(v.data(), src, count * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}

// Merges one partial into a running state of `rows` × `dim` (both starting `offset_floats` into their buffers) and
// checks output and log-sum-exp against the float64 merge.
void check_merge(std::int64_t rows, std::int64_t dim, bool first, std::int64_t offset_floats, unsigned seed) {
  const auto n = static_cast<std::size_t>(rows * dim);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f), lse(-3.0f, 6.0f);
  std::vector<float> run(n), part(n), run_lse(static_cast<std::size_t>(rows)), part_lse(run_lse.size());
  for (auto& x : run) x = value(rng);
  for (auto& x : part) x = value(rng);
  for (std::size_t r = 0; r < run_lse.size(); ++r) {
    run_lse[r] = r % 7 == 3 || r % 11 == 5 ? kNoKeys : lse(rng);  // rows the running side has no key for
    part_lse[r] = r % 5 == 2 || r % 11 == 5 ? kNoKeys : lse(rng);  // ... the partial; r % 11 == 5: neither
  }
  if (first) std::fill(run.begin(), run.end(), std::numeric_limits<float>::quiet_NaN());  // must not be read
  const std::size_t pad = static_cast<std::size_t>(offset_floats);
  DeviceBuffer d_run((n + pad) * 4), d_part((n + pad) * 4);
  DeviceBuffer d_run_lse(run_lse.size() * 4), d_part_lse(run_lse.size() * 4);
  float* run_out = static_cast<float*>(d_run.ptr) + pad;
  float* part_out = static_cast<float*>(d_part.ptr) + pad;
  upload(run_out, run);
  upload(part_out, part);
  upload(d_run_lse.ptr, run_lse);
  upload(d_part_lse.ptr, part_lse);
  paratwin::cuda::launch_attention_merge(run_out, static_cast<float*>(d_run_lse.ptr), part_out,
                                         static_cast<const float*>(d_part_lse.ptr), rows, dim, first, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto got = download<float>(run_out, n);
  const auto got_lse = download<float>(d_run_lse.ptr, run_lse.size());
  std::int64_t bad = 0, bad_lse = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto ri = static_cast<std::size_t>(r);
    double want_lse = part_lse[ri], w_run = 0, w_part = 1;
    if (!first) {
      const double m = std::max(run_lse[ri], part_lse[ri]);
      if (std::isinf(m)) {
        want_lse = kNoKeys;
        w_part = 0;
      } else {
        const double er = std::exp(run_lse[ri] - m), ep = std::exp(part_lse[ri] - m);
        want_lse = m + std::log(er + ep);
        w_run = er / (er + ep);
        w_part = ep / (er + ep);
      }
    }
    const bool lse_ok = std::isinf(want_lse) ? got_lse[ri] == kNoKeys : std::abs(got_lse[ri] - want_lse) < 1e-5;
    bad_lse += lse_ok ? 0 : 1;
    for (std::int64_t c = 0; c < dim; ++c) {
      const auto i = static_cast<std::size_t>(r * dim + c);
      const double want = w_part * part[i] + (w_run > 0 ? w_run * run[i] : 0.0);
      if (!std::isfinite(got[i]) || std::abs(got[i] - want) > 1e-5 * (1 + std::abs(want))) ++bad;
    }
  }
  INFO(rows << " rows x " << dim << (first ? ", first merge" : "") << ", offset " << offset_floats);
  CHECK(bad == 0);
  CHECK(bad_lse == 0);
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, 4);
  return f;
}

void check_to_bf16(std::int64_t count, std::int64_t dst_offset_elements) {
  std::mt19937 rng(static_cast<unsigned>(count));
  std::uniform_real_distribution<float> value(-100.0f, 100.0f);
  std::vector<float> src(static_cast<std::size_t>(count));
  for (auto& x : src) x = value(rng);
  DeviceBuffer d_src(src.size() * 4), d_dst((src.size() + static_cast<std::size_t>(dst_offset_elements)) * 2);
  upload(d_src.ptr, src);
  REQUIRE(cudaMemset(d_dst.ptr, 0xFF, (src.size() + static_cast<std::size_t>(dst_offset_elements)) * 2) ==
          cudaSuccess);  // NaN in bf16: an unwritten element fails
  void* dst = static_cast<std::uint16_t*>(d_dst.ptr) + dst_offset_elements;
  paratwin::cuda::launch_to_bf16(static_cast<const float*>(d_src.ptr), dst, count, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto got = download<std::uint16_t>(dst, src.size());
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    const float g = bf16_to_float(got[i]);
    // Round to nearest: within half a unit in the last place of bf16's 8-bit significand.
    if (!std::isfinite(g) || std::abs(g - src[i]) > std::abs(src[i]) * (1.0f / 256.0f)) ++bad;
  }
  INFO(count << " elements, dst offset " << dst_offset_elements);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("the ring merge of fp32 partials equals the float64 softmax over both key sets", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  SECTION("four-wide: head dim 128, later merges and the first") {
    check_merge(1000, 128, false, 0, 1);
    check_merge(1000, 128, true, 0, 2);
    check_merge(3, 4, false, 0, 3);
  }
  SECTION("one element per thread: head dim 6, and a buffer 4 bytes off 16-byte alignment") {
    check_merge(777, 6, false, 0, 4);
    check_merge(500, 128, false, 1, 5);
    check_merge(500, 128, true, 1, 6);
  }
}

TEST_CASE("the ring's bf16 output equals the fp32 running output rounded", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  check_to_bf16(4096 * 128, 0);  // four-wide
  check_to_bf16(1001, 0);        // a count that is not a multiple of 4
  check_to_bf16(4096, 1);        // dst 2 bytes off 8-byte alignment
}
