// DeepSeek-V3.2's DSA indexer with fp8 operands (launch_indexer_score_fp8: indexer_fp8_wgmma.cu on Hopper, the fp8
// reference kernel elsewhere) against a double-precision host sum, and the binder's choice of kernel family for
// indexer ops (cuda_plan::indexer_score_path).
//
// Inputs are fresh random reals quantised to e4m3 on the host as DeepSeek-V3.2 quantises them: q per (query, head)
// and k per key, each 128-dim row scaled by amax / 448 (e4m3's largest finite value); q's scale folded into the fp32
// head weights (relu(s·x) = s·relu(x) for s ≥ 0), k's passed per key. The reference sums the dequantised values in
// double. Outputs are NaN-poisoned: every element must be written, invisible keys as −FLT_MAX.
//
// Tolerance: 2e-3 of the score's magnitude k_scale · Σ_h |w_h| · Σ_d |q_hd · k_d|. The e4m3 products are exact in
// fp32; the fp8 MMA sums each k32 group's products keeping about 13-14 fraction bits relative to the group's largest
// (DeepSeek-V3 technical report §3.3.2), so a product loses less than 2^-13 of that largest product, with either sign
// across products: on these random rows the sum of those losses stays near sqrt(128) · 2^-14 ≈ 7e-4 of a dot's largest
// product, itself below its Σ|products|. A wrong key, head, query, scale or mask is off by ~10 % of the magnitude or
// more (a score is a signed sum of 64 head terms: about 1/sqrt(64) of their absolute sum).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/op_binder.hpp"
#include "backend/cuda/tensor_map.hpp"
#include "models/schedule_builder.hpp"
#include "tests/gpu/dsa_indexer_check.hpp"
#include "tests/gpu/small_shapes.hpp"

using namespace paratwin;
using namespace paratwin::cuda;
using namespace paratwin::cuda::dsa_indexer_check;

namespace {

struct Device {
  void* ptr = nullptr;
  explicit Device(std::size_t bytes) { REQUIRE(cudaMalloc(&ptr, std::max<std::size_t>(bytes, 16)) == cudaSuccess); }
  ~Device() { cudaFree(ptr); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
};

template <typename T>
std::unique_ptr<Device> upload(const std::vector<T>& v) {
  auto d = std::make_unique<Device>(v.size() * sizeof(T));
  REQUIRE(cudaMemcpy(d->ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return d;
}

// e4m3 (OCP FP8, as __nv_fp8_e4m3): sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities, 0x7F / 0xFF NaN.
double e4m3_value(std::uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF, mantissa = bits & 0x7;
  const double magnitude =
      exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return (bits & 0x80) != 0 ? -magnitude : magnitude;
}
constexpr double kE4m3Max = 448.0;

// The e4m3 nearest to x (|x| ≤ 448; ties to the even mantissa), as its bits.
std::uint8_t to_e4m3(double x) {
  static const auto positives = [] {  // the 127 finite non-negative e4m3 values, ascending by bits
    std::array<double, 127> v{};
    for (int b = 0; b < 127; ++b) v[static_cast<std::size_t>(b)] = e4m3_value(static_cast<std::uint8_t>(b));
    return v;
  }();
  const double a = std::min(std::fabs(x), kE4m3Max);
  const auto above = std::lower_bound(positives.begin(), positives.end(), a);
  auto bits = static_cast<int>(above - positives.begin());
  if (bits > 0) {
    const double hi = positives[static_cast<std::size_t>(bits)], lo = positives[static_cast<std::size_t>(bits - 1)];
    if (a - lo < hi - a || (a - lo == hi - a && (bits - 1) % 2 == 0)) --bits;
  }
  return static_cast<std::uint8_t>(bits | (x < 0 && bits != 0 ? 0x80 : 0));
}

// Rows of `dim` random reals quantised per row: e4m3 bits, their values, one scale per row (amax / 448).
struct QuantisedRows {
  std::vector<std::uint8_t> bits;
  std::vector<double> values;  // the e4m3 values (unscaled)
  std::vector<float> scale;    // per row
};
QuantisedRows quantised_rows(std::int64_t rows, std::int64_t dim, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  QuantisedRows q;
  q.bits.resize(static_cast<std::size_t>(rows * dim));
  q.values.resize(q.bits.size());
  q.scale.resize(static_cast<std::size_t>(rows));
  std::vector<double> row(static_cast<std::size_t>(dim));
  for (std::int64_t r = 0; r < rows; ++r) {
    double amax = 0;
    for (auto& x : row) {
      x = normal(rng);
      amax = std::max(amax, std::fabs(x));
    }
    const auto scale = static_cast<float>(amax / kE4m3Max);
    q.scale[static_cast<std::size_t>(r)] = scale;
    for (std::int64_t d = 0; d < dim; ++d) {
      const auto i = static_cast<std::size_t>(r * dim + d);
      q.bits[i] = to_e4m3(row[static_cast<std::size_t>(d)] / static_cast<double>(scale));
      q.values[i] = e4m3_value(q.bits[i]);
    }
  }
  return q;
}

bool hopper() {
  int device = 0, major = 0, minor = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess);
  return major == 9 && minor == 0;
}

// The scores of `kernel` (nullopt: whichever launch_indexer_score_fp8 picks, which on Hopper at 64 heads x 128 must be
// the wgmma kernel) against the double-precision host sum.
void check_fp8_indexer(const IndexerShape& s, std::uint32_t seed, std::optional<IndexerKernel> kernel = std::nullopt) {
  INFO(s.what << (kernel ? std::string(", kernel ") + to_string(*kernel) : std::string(", dispatched")));
  std::mt19937 rng(seed);
  const auto q = quantised_rows(s.queries * s.heads, s.dim, rng);
  const auto k = quantised_rows(s.keys, s.dim, rng);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(s.queries * s.heads));  // head weights with q's scales folded in
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = uniform(rng) * q.scale[i];
  const auto dq = upload(q.bits), dk = upload(k.bits), dk_scale = upload(k.scale), dw = upload(w);
  const auto out_count = static_cast<std::size_t>(s.queries * s.keys);
  Device out(out_count * 4);
  REQUIRE(cudaMemset(out.ptr, 0xFF, out_count * 4) == cudaSuccess);  // NaN: an element never written fails
  const auto* k_scale = static_cast<const float*>(dk_scale->ptr);
  const auto* weights = static_cast<const float*>(dw->ptr);
  auto* scores = static_cast<float*>(out.ptr);
  if (!kernel && s.heads == 64 && s.dim == 128 && hopper()) {
    CHECK(indexer_fp8_kernel_for(dq->ptr, dk->ptr, s.queries, s.keys, s.heads, s.dim) == IndexerKernel::kWgmma);
  }
  if (kernel) {
    REQUIRE(launch_indexer_score_fp8_on(*kernel, dq->ptr, dk->ptr, k_scale, weights, scores, s.queries, s.keys, s.heads,
                                        s.dim, s.q_start, s.q_stride, s.causal, nullptr));
  } else {
    launch_indexer_score_fp8(dq->ptr, dk->ptr, k_scale, weights, scores, s.queries, s.keys, s.heads, s.dim, s.q_start,
                             s.q_stride, s.causal, nullptr);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> got(out_count);
  REQUIRE(cudaMemcpy(got.data(), out.ptr, out_count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);

  double worst = 0;  // the largest error as a fraction of its score's magnitude
  const auto counts = count_scores(s, got, [&](std::int64_t i, std::int64_t j, float g) {
    double sum = 0, magnitude = 0;
    for (std::int64_t h = 0; h < s.heads; ++h) {
      double dot = 0, dot_magnitude = 0;
      for (std::int64_t d = 0; d < s.dim; ++d) {
        const double p = q.values[static_cast<std::size_t>((i * s.heads + h) * s.dim + d)] *
                         k.values[static_cast<std::size_t>(j * s.dim + d)];
        dot += p;
        dot_magnitude += std::fabs(p);
      }
      const double wh = w[static_cast<std::size_t>(i * s.heads + h)];
      sum += wh * std::max(dot, 0.0);
      magnitude += std::fabs(wh) * dot_magnitude;
    }
    const double scale = k.scale[static_cast<std::size_t>(j)];
    const double error = std::fabs(static_cast<double>(g) - scale * sum);
    worst = std::max(worst, error / (scale * magnitude));
    return error <= 2e-3 * scale * magnitude;
  });
  INFO("largest error " << worst << " of the magnitude");
  if (s.causal) CHECK(counts.masked > 0);
  CHECK(counts.bad == 0);
}

// 64 heads × 128 (the fp8 kernel's): blocks of 8 queries (two consumers of 4) against 64-key tiles through an 8-stage
// ring. Ragged keys and queries, the causal boundary inside a tile, round-robin CP's stride 2, few queries.
const IndexerShape kFp8Shapes[] = {
    kLastQueries,
    kKeysOnePastATile,
    {"causal, round-robin CP rank 1 of 2 (q_stride 2 from position 1)", 40, 400, 64, 128, 1, 2, true},
    {"causal, round-robin CP rank 0 of 2 late in the context (q_stride 2)", 19, 700, 64, 128, 300, 2, true},
    {"causal, 3 queries (one partial block, one idle consumer) over 16 key tiles", 3, 1000, 64, 128, 997, 1, true},
    kRaggedBlock,
    kFromPositionZero,
    kNegativePositions,
    kDescendingPositions,
    kOneKey,
    {"causal, 32 key tiles: the 8-stage k ring wraps 4 times", 9, 2000, 64, 128, 1990, 1, true},
};

// Under compute-sanitizer (PARATWIN_GPU_TEST_SMALL=1): shapes up to this many query·key·head triples.
constexpr double kSmallTriples = 1e6;

std::int64_t fp8_indexer_ops_of(const Schedule& schedule) {
  std::int64_t ops = 0;
  for (const auto& op : schedule.ranks[0]) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c != nullptr && c->kind == ComputeKind::kIndexerScore) ++ops;
  }
  return ops;
}

}  // namespace

TEST_CASE("the DSA indexer's fp8 scores equal a double-precision host sum on ragged shapes", "[gpu]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  REQUIRE(devices > 0);
  std::uint32_t seed = 211;
  for (const auto& s : kFp8Shapes) {
    if (!paratwin::test::runs_at_this_size(static_cast<double>(s.queries * s.keys * s.heads), kSmallTriples)) continue;
    check_fp8_indexer(s, seed++);                             // dispatched: the wgmma kernel on Hopper
    check_fp8_indexer(s, seed++, IndexerKernel::kReference);  // the fallback on the same shapes
  }
}

TEST_CASE("the DSA indexer's fp8 reference kernel equals a double-precision host sum at any shape", "[gpu]") {
  std::uint32_t seed = 301;
  check_fp8_indexer({"64 heads x 128, causal, q_stride 2", 5, 90, 64, 128, 60, 2, true}, seed++,
                    IndexerKernel::kReference);
  check_fp8_indexer({"general shape (3 heads x 20), not causal", 4, 33, 3, 20, 0, 1, false}, seed++,
                    IndexerKernel::kReference);
  // The dispatcher takes the reference kernel where the Hopper kernel cannot run: 8 heads x 32.
  check_fp8_indexer({"general shape (8 heads x 32), causal, dispatched", 13, 70, 8, 32, 57, 1, true}, seed++);
}

TEST_CASE("the DSA indexer's fp8 launcher picks the Hopper kernel at 64 heads x 128 and falls back by shape", "[gpu]") {
  alignas(16) static char operand[32];
  const void* q = operand;
  const void* k = operand + 16;
  if (hopper()) {
    CHECK(indexer_fp8_kernel_for(q, k, 16384, 16384, 64, 128) == IndexerKernel::kWgmma);
  } else {
    CHECK(indexer_fp8_kernel_for(q, k, 16384, 16384, 64, 128) == IndexerKernel::kReference);  // sm_90a code only
  }
  CHECK(indexer_fp8_kernel_for(operand + 2, k, 16, 16, 64, 128) == IndexerKernel::kReference);  // unaligned q
  CHECK(indexer_fp8_kernel_for(q, k, 16, 16, 32, 128) == IndexerKernel::kReference);            // other head count
  CHECK(indexer_fp8_kernel_for(q, k, 16, 16, 64, 64) == IndexerKernel::kReference);             // other dimension
  // q rows past the copy engine's 32-bit coordinates.
  CHECK(indexer_fp8_kernel_for(q, k, std::int64_t{1} << 26, 16384, 64, 128) == IndexerKernel::kReference);
  // A kernel that does not take the arguments launches nothing and says so; there is no fp8 mma.sync kernel.
  CHECK_FALSE(launch_indexer_score_fp8_on(IndexerKernel::kWgmma, q, k, nullptr, nullptr, nullptr, 16, 16, 32, 128, 0, 1,
                                          true, nullptr));
  CHECK_FALSE(launch_indexer_score_fp8_on(IndexerKernel::kMmaSync, q, k, nullptr, nullptr, nullptr, 16, 16, 64, 128, 0,
                                          1, true, nullptr));
}

// Binding runs no kernel (the compute capability is the test's); it asks the driver for its tensor-map encoder, which
// the fp8 kernel needs. The bound program counts the indexer ops by kernel family.
TEST_CASE("the DSA indexer's fp8 ops bind to the fp8 kernel on sm_90 and fall back to bf16 elsewhere", "[gpu]") {
  REQUIRE(tensor_map_encoder_available());
  const auto model = load_model("deepseek-v3.2");
  ScheduleOptions options;
  options.prompt_tokens = 256;
  options.layers = 1;
  const auto schedule = build_schedule(model, ParallelConfig{}, options);
  const std::int64_t ops = fp8_indexer_ops_of(schedule);
  REQUIRE(ops > 0);
  for (const auto& op : schedule.ranks[0]) {  // the builder emits the indexer in fp8, as DeepSeek-V3.2 runs it
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c != nullptr && c->kind == ComputeKind::kIndexerScore) CHECK(c->dtype == DType::kFp8);
  }
  const auto bound = [&](const Schedule& s, int compute_capability) {
    BindOptions bind;
    bind.compute_capability = compute_capability;
    auto program = std::make_unique<RankProgram>();
    bind_rank(s, model, 0, 1, bind, *program);
    return program;
  };
  const auto h200 = bound(schedule, 90);
  CHECK(h200->indexer_fp8_ops == ops);
  CHECK(h200->indexer_bf16_ops == 0);
  CHECK(h200->indexer_fp8_fallbacks.empty());

  const auto ampere = bound(schedule, 80);  // sm_90a code does not run there: the bf16 kernels, with the reason
  CHECK(ampere->indexer_fp8_ops == 0);
  CHECK(ampere->indexer_bf16_ops == ops);
  REQUIRE(ampere->indexer_fp8_fallbacks.size() == static_cast<std::size_t>(ops));
  CHECK(ampere->indexer_fp8_fallbacks.front() == "the GPU is sm_80; the fp8 indexer kernel runs on sm_90 only");

  auto bf16_schedule = schedule;  // the same ops in bf16 stay on the bf16 kernels, with nothing to explain
  for (auto& op : bf16_schedule.ranks[0]) {
    auto* c = std::get_if<ComputeOp>(&op.body);
    if (c != nullptr && c->kind == ComputeKind::kIndexerScore) c->dtype = DType::kBf16;
  }
  const auto bf16 = bound(bf16_schedule, 90);
  CHECK(bf16->indexer_fp8_ops == 0);
  CHECK(bf16->indexer_bf16_ops == ops);
  CHECK(bf16->indexer_fp8_fallbacks.empty());
}
