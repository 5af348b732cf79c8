// The memory-bound layer kernels (elementwise_kernels.cu: RMSNorm, RoPE, SwiGLU, residual add, MoE unpermute and
// combine) against a float64 host reference on fresh random bf16 inputs. Outputs start poisoned (0xFFFF is a bf16 NaN),
// so an element the kernel does not write fails; elements a kernel must leave alone are checked bit for bit. Every
// kernel runs on its 16-byte vector path (aligned rows, lengths multiple of 8) and on its one-element path (ragged
// lengths, unaligned pointers), on several shapes with odd row counts.
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ios>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "tests/gpu/small_shapes.hpp"
#include "topology/error.hpp"

using namespace paratwin::cuda;

namespace {

using i64 = std::int64_t;
using Bits = std::vector<std::uint16_t>;

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::uint16_t float_to_bf16(float f) {  // round to nearest even (finite inputs)
  std::uint32_t bits = 0;
  std::memcpy(&bits, &f, sizeof f);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

std::size_t at(i64 i) {
  return static_cast<std::size_t>(i);
}

Bits random_bf16(i64 count, std::mt19937_64& rng, float lo = -2.0f, float hi = 2.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  Bits v(at(count));
  for (auto& x : v) x = float_to_bf16(u(rng));
  return v;
}

// One device allocation, with `count` bf16 elements starting `offset` elements in (offset 1: a pointer that is not
// 16-byte aligned).
class DeviceBf16 {
 public:
  DeviceBf16(i64 count, i64 offset = 0) : count_(count), offset_(offset) {
    REQUIRE(cudaMalloc(&base_, static_cast<std::size_t>((count + offset) * 2 + 16)) == cudaSuccess);
    poison();
  }
  ~DeviceBf16() { cudaFree(base_); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;
  void* get() const { return static_cast<std::uint16_t*>(base_) + offset_; }
  void poison() { REQUIRE(cudaMemset(get(), 0xFF, static_cast<std::size_t>(count_ * 2)) == cudaSuccess); }
  void upload(const Bits& v) {
    REQUIRE(static_cast<i64>(v.size()) == count_);
    REQUIRE(cudaMemcpy(get(), v.data(), v.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  }
  Bits download() const {
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    Bits v(at(count_));
    REQUIRE(cudaMemcpy(v.data(), get(), v.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }

 private:
  void* base_ = nullptr;
  i64 count_, offset_;
};

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& v) {
    REQUIRE(cudaMalloc(&p_, std::max<std::size_t>(v.size(), 1) * sizeof(T)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  const T* get() const { return static_cast<const T*>(p_); }

 private:
  void* p_ = nullptr;
};

// Compares every element of `got` (bf16) with the float64 reference: |got − ref| ≤ 2⁻⁸·|ref| + abs_tol[i] (bf16
// rounding of the output is ≤ 2⁻⁹ relative; abs_tol covers the fp32 arithmetic); abs_tol[i] = 0 asks for ref exactly
// (an element the kernel must not change, or an exact result).
void check_close(const std::string& what, const Bits& got, const std::vector<double>& ref,
                 const std::vector<double>& abs_tol) {
  REQUIRE(got.size() == ref.size());
  i64 bad = 0, first_bad = -1;
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = bf16_to_float(got[i]);
    const double err = std::fabs(g - ref[i]);
    const double tol = abs_tol[i] == 0 ? 0 : std::ldexp(std::fabs(ref[i]), -8) + abs_tol[i];
    if (!std::isfinite(g) || !(err <= tol)) {
      if (bad++ == 0) first_bad = static_cast<i64>(i);
    }
    if (std::isfinite(g) && tol > 0) worst = std::max(worst, err / tol);
  }
  const std::size_t shown = at(std::max<i64>(first_bad, 0));
  INFO(what << ": " << bad << " of " << got.size() << " elements off; first at " << first_bad << " (got "
            << bf16_to_float(got[shown]) << ", want " << ref[shown] << "); worst error / tolerance " << worst);
  CHECK(bad == 0);
}

// Compares `got` with `want` bit for bit (a result whose rounding is part of the kernel's contract).
void check_bits(const std::string& what, const Bits& got, const Bits& want) {
  REQUIRE(got.size() == want.size());
  i64 bad = 0, first_bad = -1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && bad++ == 0) first_bad = static_cast<i64>(i);
  }
  const std::size_t shown = at(std::max<i64>(first_bad, 0));
  INFO(what << ": " << bad << " of " << got.size() << " elements differ in their bits; first at " << first_bad
            << " (got 0x" << std::hex << got[shown] << ", want 0x" << want[shown] << std::dec << ")");
  CHECK(bad == 0);
}

std::vector<double> constant(std::size_t n, double v) {
  return std::vector<double>(n, v);
}

// ---------------------------------------------------------------------------------------------------------------

struct NormCase {
  const char* name;
  i64 rows, n;
  i64 inner = 1;         // rows per outer row (per-head norms: heads)
  i64 outer_stride = 0;  // elements between outer rows (0: inner · n)
  bool row_map = false;  // rows read through a shuffled map (with repeats)
  bool in_place = false;
  i64 misalign = 0;  // elements the input starts past a 16-byte boundary
};

void check_rmsnorm(const NormCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const i64 outer_stride = c.outer_stride != 0 ? c.outer_stride : c.inner * c.n;
  // Source rows: enough outer rows for every source index s < src_rows.
  const i64 src_rows = c.row_map ? c.rows + 3 : c.rows;
  const i64 outer_rows = (src_rows + c.inner - 1) / c.inner;
  const i64 in_count = outer_rows * outer_stride;
  DeviceBf16 in(in_count, c.misalign), w(c.n), out(c.in_place ? 1 : c.rows * c.n);
  const Bits x = random_bf16(in_count, rng), wt = random_bf16(c.n, rng, 0.5f, 1.5f);
  in.upload(x);
  w.upload(wt);
  std::vector<int> map(at(c.rows));
  std::uniform_int_distribution<int> pick(0, static_cast<int>(src_rows - 1));
  for (i64 r = 0; r < c.rows; ++r) map[at(r)] = c.row_map ? pick(rng) : static_cast<int>(r);
  if (c.in_place && c.row_map) {  // in place, each source row once: a permutation
    for (i64 r = 0; r < c.rows; ++r) map[at(r)] = static_cast<int>(r);
    std::shuffle(map.begin(), map.end(), rng);
  }
  const DeviceArray<int> device_map(map);
  const float eps = 1e-6f;
  launch_rmsnorm(in.get(), c.in_place ? in.get() : out.get(), w.get(), c.rows, c.n, c.inner, outer_stride,
                 c.row_map ? device_map.get() : nullptr, eps, nullptr);
  REQUIRE(cudaGetLastError() == cudaSuccess);

  const auto src_offset = [&](i64 s) { return (s / c.inner) * outer_stride + (s % c.inner) * c.n; };
  std::vector<double> expect_in(x.size());  // in place: the whole input buffer, normalized rows replaced
  for (std::size_t i = 0; i < x.size(); ++i) expect_in[i] = bf16_to_float(x[i]);
  std::vector<bool> written(x.size(), false);
  std::vector<double> ref(at(c.rows * c.n));
  for (i64 r = 0; r < c.rows; ++r) {
    const i64 base = src_offset(map[at(r)]);
    double ss = 0;
    for (i64 j = 0; j < c.n; ++j) ss += std::pow(static_cast<double>(bf16_to_float(x[at(base + j)])), 2);
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(c.n) + eps);
    for (i64 j = 0; j < c.n; ++j) {
      const double v = bf16_to_float(x[at(base + j)]) * inv * bf16_to_float(wt[at(j)]);
      ref[at(r * c.n + j)] = v;
      expect_in[at(base + j)] = v;
      written[at(base + j)] = true;
    }
  }
  if (!c.in_place) {
    check_close(c.name, out.download(), ref, constant(ref.size(), 1e-5));
    return;
  }
  const Bits got = in.download();
  std::vector<double> tol(got.size(), 1e-5);
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!written[i]) tol[i] = 0;  // columns outside the normalized rows stay bit for bit
  }
  check_close(c.name, got, expect_in, tol);
}

}  // namespace

TEST_CASE("RMSNorm kernels equal a float64 reference on every path (warp rows, block rows, ragged, in place)",
          "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  const NormCase cases[] = {
      {"hidden 4096, block per row", 37, 4096},
      {"hidden 7168 (224 threads), row map", 5, 7168, 1, 0, true},
      {"hidden 8192", 3, 8192},
      {"hidden 16384: 512 threads", 3, 16384},
      {"row of 40000: longer than registers hold", 3, 40000},
      {"per-head norm in place: 1001 rows of 128, 7 heads in a QKV row of 11", 1001, 128, 7, 11 * 128, false, true},
      {"per-head norm in place through a permutation", 77, 128, 7, 11 * 128, true, true},
      {"rows of 64: 8 lanes per row", 33, 64},
      {"rows of 256: a warp per row", 33, 256, 1, 0, true},
      {"rows of 512: 2 packs per lane", 19, 512},
      {"rows of 1024: 4 packs per lane", 19, 1024},
      {"rows of 1536 (q_lora_rank)", 9, 1536},
      {"ragged 1001 with a row map", 21, 1001, 1, 0, true},
      {"ragged 9001: two passes over memory", 3, 9001},
      // A block per row (aligned rows over 1024): thousands of rows, pack counts that are not a multiple of the 4
      // packs per thread (129: the first length past the warp path; 145), in place, through a row map, two rows per
      // outer row of a strided layout, and the longest row held in registers (32768: 1024 threads).
      {"block rows: 3001 rows of 1032 (129 packs)", 3001, 1032},
      {"block rows: 5003 rows of 1160 in place", 5003, 1160, 1, 0, false, true},
      {"block rows: 2 rows of 4096", 2, 4096},
      {"block rows: 999 rows of 2048 through a row map", 999, 2048, 1, 0, true},
      {"block rows: 301 rows of 1536, 2 per outer row of stride 2 * 1536 + 8", 301, 1536, 2, 2 * 1536 + 8},
      {"block rows: 1 row of 32768 (1024 threads)", 1, 32768},
      {"unaligned input", 13, 512, 1, 0, false, false, 1},
      {"unaligned outer stride in place", 15, 64, 3, 3 * 64 + 4, false, true},
  };
  std::uint64_t seed = 100;
  for (const auto& c : cases) check_rmsnorm(c, ++seed);
}

namespace {

struct AddNormCase {
  const char* name;
  i64 rows, n;
  i64 misalign = 0;            // elements the residual and update start past a 16-byte boundary
  bool out_is_update = false;  // SGLang's in-place form: the normed rows overwrite the update
};

// The fused add + RMSNorm: the residual must hold bf16(residual + update), the fp32 sum rounded to nearest even, bit
// for bit (the fp32 sum of two bf16 is what the kernel rounds), and the output the float64 RMSNorm of that rounded
// residual (the kernel's stated semantics, kernels.hpp: the norm of the stream it keeps).
void check_add_rmsnorm(const AddNormCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const i64 count = c.rows * c.n;
  DeviceBf16 residual(count, c.misalign), update(count, c.misalign), w(c.n), out(c.out_is_update ? 1 : count);
  const Bits r0 = random_bf16(count, rng), u0 = random_bf16(count, rng), wt = random_bf16(c.n, rng, 0.5f, 1.5f);
  residual.upload(r0);
  update.upload(u0);
  w.upload(wt);
  const float eps = 1e-6f;
  void* dst = c.out_is_update ? update.get() : out.get();
  launch_add_rmsnorm(residual.get(), update.get(), dst, w.get(), c.rows, c.n, eps, nullptr);
  REQUIRE(cudaGetLastError() == cudaSuccess);

  Bits kept_bits(at(count));
  std::vector<double> ref(at(count));
  for (i64 r = 0; r < c.rows; ++r) {
    double ss = 0;
    for (i64 j = 0; j < c.n; ++j) {
      const auto i = at(r * c.n + j);
      kept_bits[i] = float_to_bf16(bf16_to_float(r0[i]) + bf16_to_float(u0[i]));
      const double kept = bf16_to_float(kept_bits[i]);
      ss += kept * kept;
      ref[i] = kept;
    }
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(c.n) + eps);
    for (i64 j = 0; j < c.n; ++j) ref[at(r * c.n + j)] *= inv * bf16_to_float(wt[at(j)]);
  }
  check_bits(std::string(c.name) + ": residual", residual.download(), kept_bits);
  check_close(std::string(c.name) + ": normed", c.out_is_update ? update.download() : out.download(), ref,
              constant(ref.size(), 1e-5));
}

}  // namespace

TEST_CASE("fused residual add + RMSNorm equals a float64 reference on every path, both outputs", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  const AddNormCase cases[] = {
      {"hidden 4096 (Qwen3-235B), block per row", 37, 4096},
      {"hidden 7168 (DeepSeek-V3.2): 224 threads", 5, 7168},
      {"hidden 8192 (Llama-3.1-70B)", 3, 8192},
      {"hidden 4096, normed rows over the update", 9, 4096, 0, true},
      {"rows of 64: 8 lanes per row", 33, 64},
      {"rows of 256: a warp per row", 33, 256},
      {"rows of 512: 2 packs per lane", 19, 512},
      {"rows of 1024: 4 packs per lane", 19, 1024},
      {"block rows: 3001 rows of 1032 (129 packs)", 3001, 1032},
      {"block rows: 1 row of 32768 (1024 threads)", 1, 32768},
      {"row of 40000: longer than registers hold", 3, 40000},
      {"ragged 1001", 21, 1001},
      {"ragged 9001: two passes over memory", 3, 9001},
      {"unaligned residual and update", 13, 512, 1},
      {"unaligned, normed rows over the update", 7, 4096, 1, true},
  };
  std::uint64_t seed = 150;
  for (const auto& c : cases) check_add_rmsnorm(c, ++seed);
}

TEST_CASE("fused residual add + RMSNorm refuses an output that overlaps the residual, before any launch", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  const i64 rows = 4, n = 256;
  DeviceBf16 residual(2 * rows * n), update(rows * n), w(n);
  const auto launch = [&](void* out, const void* upd) {
    launch_add_rmsnorm(residual.get(), upd, out, w.get(), rows, n, 1e-6f, nullptr);
  };
  auto* second_row = static_cast<std::uint16_t*>(residual.get()) + n;
  CHECK_THROWS_WITH(launch(residual.get(), update.get()), Catch::Contains("must not overlap residual"));
  CHECK_THROWS_AS(launch(second_row, update.get()), paratwin::InternalError);  // rows shared at an offset
  CHECK_THROWS_WITH(launch(static_cast<std::uint16_t*>(update.get()) + 1, update.get()),
                    Catch::Contains("must be update"));
  const Bits untouched = residual.download();  // still all poison: nothing ran
  CHECK(std::all_of(untouched.begin(), untouched.end(), [](std::uint16_t b) { return b == 0xFFFF; }));
  launch(update.get(), update.get());  // SGLang's in-place form stays allowed
  REQUIRE(cudaGetLastError() == cudaSuccess);
}

namespace {

struct RopeCase {
  const char* name;
  i64 tokens, heads, head_dim;
  i64 row_stride;  // ≥ heads · head_dim; the rest of each row must stay untouched
  bool positions;  // random long-context positions, else t
  i64 misalign = 0;
};

void check_rope(const RopeCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const i64 count = c.tokens * c.row_stride;
  DeviceBf16 x(count, c.misalign);
  const Bits in = random_bf16(count, rng);
  x.upload(in);
  std::vector<int> pos(at(c.tokens));
  std::uniform_int_distribution<int> pick(0, 131071);
  for (i64 t = 0; t < c.tokens; ++t) pos[at(t)] = c.positions ? pick(rng) : static_cast<int>(t);
  const DeviceArray<int> device_pos(pos);
  const float theta = 10000.0f;
  launch_rope(x.get(), c.tokens, c.heads, c.head_dim, c.row_stride, c.positions ? device_pos.get() : nullptr, theta,
              nullptr);
  REQUIRE(cudaGetLastError() == cudaSuccess);

  std::vector<double> ref(in.size()), tol(in.size(), 0.0);  // tolerance 0: untouched elements stay bit for bit
  for (std::size_t i = 0; i < in.size(); ++i) ref[i] = bf16_to_float(in[i]);
  const i64 half = c.head_dim / 2;
  for (i64 t = 0; t < c.tokens; ++t) {
    for (i64 h = 0; h < c.heads; ++h) {
      for (i64 d = 0; d < half; ++d) {
        const i64 lo = t * c.row_stride + h * c.head_dim + d, hi = lo + half;
        const double e = -2.0 * static_cast<double>(d) / static_cast<double>(c.head_dim);
        const double angle = pos[at(t)] * std::pow(static_cast<double>(theta), e);
        const double a = bf16_to_float(in[at(lo)]), b = bf16_to_float(in[at(hi)]);
        ref[at(lo)] = a * std::cos(angle) - b * std::sin(angle);
        ref[at(hi)] = b * std::cos(angle) + a * std::sin(angle);
        // The kernel's angle is fp32 (exponent, power, product: a few ulps of the angle, the exponent's rounding
        // amplified by ln θ); its error moves each output by at most that many radians times |a| + |b|.
        const double angle_err = std::fabs(angle) * std::ldexp(std::fabs(e) * std::log(theta) + 4.0, -23) + 1e-6;
        tol[at(lo)] = tol[at(hi)] = angle_err * (std::fabs(a) + std::fabs(b)) + 1e-5;
      }
    }
  }
  check_close(c.name, x.download(), ref, tol);
}

}  // namespace

TEST_CASE("RoPE kernel equals a float64 reference at long-context positions and leaves the rest of the row alone",
          "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  const RopeCase cases[] = {
      {"QKV row: 12 query + 4 key heads of 128 rotated, 4 value heads untouched", 37, 16, 128, 20 * 128, true},
      {"MLA: 128 packed heads of 64", 9, 128, 64, 128 * 64, true},
      // Small launches take 4 heads per thread (more blocks); on an H200 (396 resident blocks) 1408 tokens of 72 heads
      // fill whole waves at 8 heads per thread, which the launcher keeps: both splits and both head loops run.
      {"72 heads, 1408 tokens", 1408, 72, 128, 80 * 128, false},
      {"70 of 72 heads (not a multiple of 4), 2000 tokens", 2000, 70, 128, 72 * 128, true},
      {"72 heads (not a multiple of the heads per thread), positions t", 5, 72, 128, 80 * 128, false},
      {"one head of 16", 11, 1, 16, 40, true},
      {"head dim 36 (half not a multiple of 8)", 7, 5, 36, 5 * 36 + 3, true},
      {"unaligned rows (stride 8·k + 4)", 7, 3, 128, 3 * 128 + 4, true},
      {"unaligned pointer", 7, 3, 128, 3 * 128, true, 1},
      // Other head dims on the 16-byte path: 32 (2 packs of 8 dims per half), 512 (32) and 96 (6), 3001 tokens.
      {"head dim 32, 3001 tokens of 20 heads", 3001, 20, 32, 24 * 32, true},
      {"head dim 512, 2 heads", 9, 2, 512, 3 * 512, true},
      {"head dim 96, 6 heads", 33, 6, 96, 8 * 96, true},
  };
  std::uint64_t seed = 200;
  for (const auto& c : cases) check_rope(c, ++seed);
}

TEST_CASE("residual add and SwiGLU kernels equal a float64 reference, ragged and unaligned too", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  std::uint64_t seed = 300;
  SECTION("add") {
    struct Case {
      const char* name;
      i64 count, y_misalign, x_misalign;
    };
    for (const Case c :
         {Case{"8000 elements", 8000, 0, 0}, Case{"8005: a ragged tail", 8005, 0, 0}, Case{"3 elements", 3, 0, 0},
          Case{"both unaligned", 4099, 1, 1}, Case{"x unaligned", 1000, 0, 3}, Case{"4M elements", 1 << 22, 0, 0}}) {
      if (!paratwin::test::runs_at_this_size(static_cast<double>(c.count), 1e6)) continue;  // under a sanitizer
      std::mt19937_64 rng(++seed);
      DeviceBf16 y(c.count, c.y_misalign), x(c.count, c.x_misalign);
      const Bits yv = random_bf16(c.count, rng), xv = random_bf16(c.count, rng);
      y.upload(yv);
      x.upload(xv);
      launch_add(y.get(), x.get(), c.count, nullptr);
      REQUIRE(cudaGetLastError() == cudaSuccess);
      std::vector<double> ref(yv.size());
      for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = double{bf16_to_float(yv[i])} + bf16_to_float(xv[i]);
      check_close(c.name, y.download(), ref, constant(ref.size(), 1e-6));
    }
  }
  SECTION("add of a tensor to itself") {
    std::mt19937_64 rng(++seed);
    DeviceBf16 y(1003);
    const Bits yv = random_bf16(1003, rng);
    y.upload(yv);
    launch_add(y.get(), y.get(), 1003, nullptr);
    std::vector<double> ref(yv.size());
    for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = 2.0 * bf16_to_float(yv[i]);
    check_close("y += y", y.download(), ref, constant(ref.size(), 0));
  }
  SECTION("silu_mul") {
    struct Case {
      const char* name;
      i64 rows, n, out_misalign;
    };
    for (const Case c : {Case{"37 rows of 1536", 37, 1536, 0}, Case{"3 rows of 2056", 3, 2056, 0},
                         Case{"ragged: 7 rows of 1001", 7, 1001, 0}, Case{"unaligned output", 5, 512, 1}}) {
      std::mt19937_64 rng(++seed);
      DeviceBf16 gu(c.rows * 2 * c.n), out(c.rows * c.n, c.out_misalign);
      const Bits g = random_bf16(c.rows * 2 * c.n, rng, -6.0f, 6.0f);
      gu.upload(g);
      launch_silu_mul(gu.get(), out.get(), c.rows, c.n, nullptr);
      REQUIRE(cudaGetLastError() == cudaSuccess);
      std::vector<double> ref(at(c.rows * c.n));
      for (i64 r = 0; r < c.rows; ++r) {
        for (i64 j = 0; j < c.n; ++j) {
          const double a = bf16_to_float(g[at(r * 2 * c.n + j)]), b = bf16_to_float(g[at(r * 2 * c.n + c.n + j)]);
          ref[at(r * c.n + j)] = a / (1.0 + std::exp(-a)) * b;
        }
      }
      check_close(c.name, out.download(), ref, constant(ref.size(), 1e-5));
    }
  }
}

namespace {

// out[t] = Σ_s w · rows[src(t, s)], skipping negative sources: unpermute (src = t·slots + s) or combine (a map).
void check_weighted_sum(const char* name, i64 tokens, i64 slots, i64 n, bool combine, bool weighted,
                        std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const i64 rows = tokens * slots;
  std::vector<int> map(at(rows));
  for (i64 i = 0; i < rows; ++i) map[at(i)] = static_cast<int>(i);
  if (combine) {
    std::shuffle(map.begin(), map.end(), rng);
    std::uniform_int_distribution<int> drop(0, 4);
    for (auto& m : map) m = drop(rng) == 0 ? -1 : m;  // a slot without a row (token sent to fewer ranks)
  }
  std::vector<float> w(at(rows));
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (auto& v : w) v = u(rng);
  DeviceBf16 src(rows * n), out(tokens * n);
  const Bits x = random_bf16(rows * n, rng);
  src.upload(x);
  const DeviceArray<int> device_map(map);
  const DeviceArray<float> device_w(w);
  if (combine) {
    launch_moe_combine(src.get(), device_map.get(), weighted ? device_w.get() : nullptr, out.get(), tokens, slots, n,
                       nullptr);
  } else {
    launch_moe_unpermute(src.get(), device_w.get(), out.get(), tokens, slots, n, nullptr);
  }
  REQUIRE(cudaGetLastError() == cudaSuccess);
  std::vector<double> ref(at(tokens * n), 0.0), tol(at(tokens * n), 1e-6);
  for (i64 t = 0; t < tokens; ++t) {
    for (i64 s = 0; s < slots; ++s) {
      const int r = map[at(t * slots + s)];
      if (r < 0) continue;
      const double wt = weighted ? w[at(t * slots + s)] : 1.0;
      for (i64 j = 0; j < n; ++j) {
        const double term = wt * bf16_to_float(x[at(r * n + j)]);
        ref[at(t * n + j)] += term;
        tol[at(t * n + j)] += 1e-6 * std::fabs(term);  // fp32 sum
      }
    }
  }
  check_close(name, out.download(), ref, tol);
}

}  // namespace

TEST_CASE("MoE unpermute and combine kernels equal a float64 reference, ragged and with missing rows", "[gpu]") {
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  check_weighted_sum("unpermute: 37 tokens, top-8, 4096", 37, 8, 4096, false, true, 401);
  check_weighted_sum("unpermute: top-3, ragged 1001", 5, 3, 1001, false, true, 402);
  check_weighted_sum("unpermute: top-10 (more rows than are loaded at once)", 9, 10, 256, false, true, 403);
  check_weighted_sum("combine: 37 tokens, 8 slots, 7168, weighted", 37, 8, 7168, true, true, 404);
  check_weighted_sum("combine: unweighted (reduce of returned rows)", 21, 2, 512, true, false, 405);
  check_weighted_sum("combine: 11 slots, ragged 1001", 6, 11, 1001, true, true, 406);
}
