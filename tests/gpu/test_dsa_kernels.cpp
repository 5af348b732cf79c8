// DeepSeek-V3.2's DSA kernels (dsa_kernels.cu, indexer_wgmma.cu, dsa_topk.cu, sparse_mla_attention.cu,
// sparse_mla_wgmma.cu) against references on fresh random inputs with poisoned outputs: the indexer's scores (each of
// its kernels: wgmma and mma.sync at 64 heads × 128, the reference kernel at any shape) against a double-precision
// sum, on ragged shapes (keys and queries not multiples of the kernels' tiles, the causal boundary inside a key tile,
// offset, strided, descending and negative query positions, blocks that see no key, causal and not); the top-k's
// selected values against a host sort, with ties, rows of fewer than k candidates and causal rows read only up to
// their query; the index-sparse MLA attention (each of its kernels: wgmma and mma.sync) against the reference
// attention kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/sparse_mla_attention.hpp"
#include "tests/gpu/device_buffer.hpp"
#include "tests/gpu/dsa_indexer_check.hpp"
#include "tests/gpu/small_shapes.hpp"

using namespace paratwin::cuda;
using namespace paratwin::cuda::dsa_indexer_check;

namespace {

using Device = paratwin::test::DeviceBuffer;

// Random bf16 values in [−1, 1): the bits to upload and the floats they stand for.
struct Bf16Data {
  std::vector<std::uint16_t> bits;
  std::vector<float> values;
};
Bf16Data random_bf16(std::size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Bf16Data d;
  d.bits.resize(count);
  d.values.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const float f = dist(rng);
    std::uint32_t u = 0;
    std::memcpy(&u, &f, 4);
    d.bits[i] = static_cast<std::uint16_t>(u >> 16);  // truncation: any bf16 will do
    const std::uint32_t back = static_cast<std::uint32_t>(d.bits[i]) << 16;
    std::memcpy(&d.values[i], &back, 4);
  }
  return d;
}

std::unique_ptr<Device> upload(const std::vector<std::uint16_t>& bits) {
  auto d = std::make_unique<Device>(bits.size() * 2);
  REQUIRE(cudaMemcpy(d->ptr, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  return d;
}

// The scores of `kernel` (nullopt: whichever launch_indexer_score picks) against a double-precision host sum; every
// element must be written (NaN-poisoned output), invisible keys as −FLT_MAX.
void check_indexer(const IndexerShape& s, std::uint32_t seed, std::optional<IndexerKernel> kernel = std::nullopt) {
  INFO(s.what << (kernel ? std::string(", kernel ") + to_string(*kernel) : std::string(", dispatched")));
  std::mt19937 rng(seed);
  const auto q = random_bf16(static_cast<std::size_t>(s.queries * s.heads * s.dim), rng);
  const auto k = random_bf16(static_cast<std::size_t>(s.keys * s.dim), rng);
  const auto w = random_bf16(static_cast<std::size_t>(s.queries * s.heads), rng);
  const auto dq = upload(q.bits), dk = upload(k.bits), dw = upload(w.bits);
  const std::size_t out_count = static_cast<std::size_t>(s.queries * s.keys);
  Device out(out_count * 4);
  REQUIRE(cudaMemset(out.ptr, 0xFF, out_count * 4) == cudaSuccess);  // NaN: an element never written fails
  if (kernel) {
    REQUIRE(launch_indexer_score_on(*kernel, dq->ptr, dk->ptr, dw->ptr, static_cast<float*>(out.ptr), s.queries, s.keys,
                                    s.heads, s.dim, s.q_start, s.q_stride, s.causal, nullptr));
  } else {
    launch_indexer_score(dq->ptr, dk->ptr, dw->ptr, static_cast<float*>(out.ptr), s.queries, s.keys, s.heads, s.dim,
                         s.q_start, s.q_stride, s.causal, nullptr);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> got(out_count);
  REQUIRE(cudaMemcpy(got.data(), out.ptr, out_count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);

  const auto counts = count_scores(s, got, [&](std::int64_t i, std::int64_t j, float g) {
    double sum = 0.0, magnitude = 0.0;
    for (std::int64_t h = 0; h < s.heads; ++h) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < s.dim; ++d) {
        dot += static_cast<double>(q.values[static_cast<std::size_t>((i * s.heads + h) * s.dim + d)]) *
               static_cast<double>(k.values[static_cast<std::size_t>(j * s.dim + d)]);
      }
      const double wh = w.values[static_cast<std::size_t>(i * s.heads + h)];
      sum += wh * std::max(dot, 0.0);
      magnitude += std::fabs(wh) * std::fabs(dot);
    }
    return std::fabs(static_cast<double>(g) - sum) <= 1e-4 * magnitude + 1e-5;
  });
  if (s.causal) CHECK(counts.masked > 0);
  CHECK(counts.bad == 0);
}

// Checks one top-k result row: distinct in-range indices, then −1 padding, whose values are the k largest candidates
// (values above −FLT_MAX) of the row as a host sort finds them.
void check_topk_row(const std::vector<float>& row, const int* idx, std::int64_t k) {
  std::vector<float> candidates;
  for (const float v : row) {
    if (v > -FLT_MAX) candidates.push_back(v);
  }
  std::sort(candidates.begin(), candidates.end(), std::greater<>());
  const auto expect_count = std::min<std::int64_t>(k, static_cast<std::int64_t>(candidates.size()));
  std::vector<float> selected;
  std::vector<int> seen;
  for (std::int64_t s = 0; s < k; ++s) {
    const int i = idx[s];
    if (s >= expect_count) {
      CHECK(i == -1);
      continue;
    }
    REQUIRE(i >= 0);
    REQUIRE(i < static_cast<int>(row.size()));
    selected.push_back(row[static_cast<std::size_t>(i)]);
    seen.push_back(i);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
  std::sort(selected.begin(), selected.end(), std::greater<>());
  candidates.resize(static_cast<std::size_t>(expect_count));
  CHECK(selected == candidates);
}

// The top-k of `rows` rows of n values whose first values, as `lengths` says, are the candidates. Past a row's
// length the values are +inf and FLT_MAX, which the kernel would select if it read them.
void check_topk(std::int64_t rows, std::int64_t n, std::int64_t k, std::uint32_t seed,
                const TopkRowLengths& lengths = {}) {
  INFO("rows " << rows << ", n " << n << ", k " << k << ", causal rows of " << lengths.q_tokens << " queries from "
               << lengths.q_start << " by " << lengths.q_stride);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  std::vector<float> in(static_cast<std::size_t>(rows * n));
  std::vector<std::int64_t> length(static_cast<std::size_t>(rows), n);
  for (std::int64_t r = 0; r < rows; ++r) {
    auto& len = length[static_cast<std::size_t>(r)];
    if (lengths.q_tokens > 0) {
      len = std::clamp<std::int64_t>(lengths.q_start + r % lengths.q_tokens * lengths.q_stride + 1, 0, n);
    }
    // Row kinds: distinct normals; 7 distinct values (ties at the threshold); a causal prefix of candidates (−FLT_MAX
    // after it, as the indexer writes); fewer candidates than k; none at all; ±inf and a negative zero among normals.
    const auto kind = r % 6;
    const std::int64_t visible = kind == 2 ? n / 2 + r : (kind == 3 ? k / 3 : (kind == 4 ? 0 : n));
    for (std::int64_t j = 0; j < n; ++j) {
      float v = kind == 1 ? static_cast<float>(small(rng)) : normal(rng);
      if (kind == 5 && j % 97 == 0) v = j % 2 == 0 ? INFINITY : -INFINITY;
      if (kind == 5 && j % 89 == 0) v = -0.0f;
      if (j >= len) v = j % 2 == 0 ? INFINITY : FLT_MAX;
      in[static_cast<std::size_t>(r * n + j)] = j < len && j >= visible ? -FLT_MAX : v;
    }
  }
  Device din(in.size() * 4), dout(static_cast<std::size_t>(rows * k * 4));
  REQUIRE(cudaMemcpy(din.ptr, in.data(), in.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(dout.ptr, 0x7F, static_cast<std::size_t>(rows * k * 4)) == cudaSuccess);  // out-of-range index
  launch_topk(static_cast<const float*>(din.ptr), static_cast<int*>(dout.ptr), rows, n, k, lengths, nullptr);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<int> idx(static_cast<std::size_t>(rows * k));
  REQUIRE(cudaMemcpy(idx.data(), dout.ptr, idx.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (std::int64_t r = 0; r < rows; ++r) {
    INFO("row " << r << " of length " << length[static_cast<std::size_t>(r)]);
    const std::vector<float> row(in.begin() + r * n, in.begin() + r * n + length[static_cast<std::size_t>(r)]);
    check_topk_row(row, idx.data() + r * k, k);
  }
}

struct SparseShape {
  const char* what;
  std::int64_t batch, q_tokens, kv_tokens, heads, keys_per_query, q_start, q_stride;
  bool causal;
};

// What the sparse attention checks run on.
// - kRandom: random q and latent rows, random key indices (−1 entries, indices past the keys, repeated indices, keys
//   after the query under causality).
// - kGrowingScores: scores that grow along every query's selection order by far more than the wgmma kernel's lazy
//   softmax reference lets pass (it moves the reference only when a tile's maximum exceeds it by more than 8 in log2
//   units): q ≈ 0.25 and latent row r ≈ 6·r / kv_tokens in every dim (a little noise in each), each query selecting
//   keys 0, 1, 2, … in order, so that the reference moves several times from a finite value and O is rescaled each
//   time (on random data it moves at the first tile only). Not causal.
// In both, one query of each request selects nothing valid.
enum class SparseInputs { kRandom, kGrowingScores };

// Host bf16 by truncation: the kernels and the reference read the same bf16 values, so the rounding does not matter.
std::uint16_t bf16_bits_truncated(float f) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &f, 4);
  return static_cast<std::uint16_t>(bits >> 16);
}

void fill_growing_scores(const SparseShape& s, void* q, void* kv, std::uint32_t seed) {
  const std::int64_t dqk = 576, q_rows = s.batch * s.q_tokens, kv_rows = s.batch * s.kv_tokens;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  std::vector<std::uint16_t> host(static_cast<std::size_t>(q_rows * s.heads * dqk));
  for (auto& x : host) x = bf16_bits_truncated(0.25f + noise(rng));
  REQUIRE(cudaMemcpy(q, host.data(), host.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  host.assign(static_cast<std::size_t>(kv_rows * dqk), 0);
  for (std::int64_t r = 0; r < kv_rows; ++r) {
    const float level = 6.0f * static_cast<float>(r % s.kv_tokens) / static_cast<float>(s.kv_tokens);
    for (std::int64_t d = 0; d < dqk; ++d) {
      host[static_cast<std::size_t>(r * dqk + d)] = bf16_bits_truncated(level * (1.0f + noise(rng)));
    }
  }
  REQUIRE(cudaMemcpy(kv, host.data(), host.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
}

// Index-sparse attention in MLA's absorbed form (one 576-wide latent row per key, values = its first 512 dims) by the
// tensor-core kernel and by the reference kernel, on the same inputs (`inputs`). Outputs poisoned with NaN.
// `kernel`: that kernel (else the dispatched path, which must be the sparse MLA one).
void check_sparse_mla(const SparseShape& s, std::uint32_t seed, std::optional<SparseMlaKernel> kernel = std::nullopt,
                      SparseInputs inputs = SparseInputs::kRandom) {
  INFO(s.what << (kernel ? std::string(" on ") + to_string(*kernel) : std::string()));
  const std::int64_t q_rows = s.batch * s.q_tokens, kv_rows = s.batch * s.kv_tokens;
  const std::int64_t dqk = 576, dv = 512;
  Device q(static_cast<std::size_t>(q_rows * s.heads * dqk * 2)), kv(static_cast<std::size_t>(kv_rows * dqk * 2));
  const bool growing = inputs == SparseInputs::kGrowingScores;
  if (growing) {
    REQUIRE_FALSE(s.causal);
    REQUIRE(s.keys_per_query <= s.kv_tokens);
    fill_growing_scores(s, q.ptr, kv.ptr, seed);
  } else {
    launch_fill_random(q.ptr, false, q_rows, s.heads * dqk, 0, nullptr, s.heads * dqk, seed, 1.0f, 0.0f, nullptr);
    launch_fill_random(kv.ptr, false, kv_rows, dqk, 0, nullptr, dqk, seed + 1, 1.0f, 0.0f, nullptr);
  }
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-2, static_cast<int>(s.kv_tokens) + 2);
  std::vector<int> index(static_cast<std::size_t>(q_rows * s.keys_per_query));
  for (std::int64_t r = 0; r < q_rows; ++r) {
    for (std::int64_t t = 0; t < s.keys_per_query; ++t) {
      const int key = growing ? static_cast<int>(t) : pick(rng);
      index[static_cast<std::size_t>(r * s.keys_per_query + t)] = r % s.q_tokens == 1 ? -1 : key;
    }
  }
  Device dindex(index.size() * 4);
  REQUIRE(cudaMemcpy(dindex.ptr, index.data(), index.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  const std::size_t out_count = static_cast<std::size_t>(q_rows * s.heads * dv);
  Device ref_out(out_count * 2), got_out(out_count * 2);
  for (void* p : {ref_out.ptr, got_out.ptr}) REQUIRE(cudaMemset(p, 0xFF, out_count * 2) == cudaSuccess);

  AttentionArgs a;
  a.q = q.ptr;
  a.k = kv.ptr;
  a.v = kv.ptr;
  a.q_row_stride = s.heads * dqk;
  a.k_row_stride = dqk;
  a.v_row_stride = dqk;
  a.out_row_stride = s.heads * dv;
  a.batch = s.batch;
  a.q_tokens = s.q_tokens;
  a.kv_tokens = s.kv_tokens;
  a.kv_batch_rows = s.kv_tokens;
  a.heads = s.heads;
  a.kv_heads = 1;
  a.head_dim_qk = dqk;
  a.head_dim_v = dv;
  a.q_start = s.q_start;
  a.q_stride = s.q_stride;
  a.causal = s.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(dqk));
  a.key_index = static_cast<const int*>(dindex.ptr);
  a.keys_per_query = s.keys_per_query;
  auto ref = a, got = a;
  ref.out = ref_out.ptr;
  got.out = got_out.ptr;
  REQUIRE(sparse_mla_attention_takes(got));
  launch_attention(ref, nullptr);
  if (kernel) {
    REQUIRE(launch_sparse_mla_attention_on(*kernel, got, nullptr));
  } else {
    CHECK(dispatch_attention(got, AttentionResources{}, nullptr) == AttentionPath::kSparseMla);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  std::vector<std::uint16_t> rb(out_count), gb(out_count);
  REQUIRE(cudaMemcpy(rb.data(), ref_out.ptr, out_count * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(gb.data(), got_out.ptr, out_count * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  const auto to_float = [](std::uint16_t b) {
    const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
    float f = 0;
    std::memcpy(&f, &bits, 4);
    return f;
  };
  double diff = 0, norm = 0;
  std::int64_t not_finite = 0, zero_rows_wrong = 0;
  for (std::size_t i = 0; i < out_count; ++i) {
    const float r = to_float(rb[i]), g = to_float(gb[i]);
    if (!std::isfinite(g)) ++not_finite;
    const auto query = static_cast<std::int64_t>(i) / (s.heads * dv);
    if (query % s.q_tokens == 1 && g != 0.0f) ++zero_rows_wrong;  // a query with no valid key: zeros
    diff += (static_cast<double>(g) - r) * (static_cast<double>(g) - r);
    norm += static_cast<double>(r) * r;
  }
  CHECK(not_finite == 0);
  CHECK(zero_rows_wrong == 0);
  const double rel_l2 = std::sqrt(diff / norm);
  INFO("relative L2 " << rel_l2);
  CHECK(rel_l2 < 1e-2);
}

// The current GPU's compute capability major (9: Hopper, the only GPU the sm_90a wgmma kernels run on).
int compute_capability_major() {
  int device = 0, major = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess);
  return major;
}

// check_sparse_mla on each kernel this GPU runs (the wgmma kernel on Hopper only), seeds counting up from `seed`.
void check_sparse_mla_on_each_kernel(std::span<const SparseShape> shapes, std::uint32_t seed, SparseInputs inputs) {
  const int major = compute_capability_major();
  for (const auto kernel : {SparseMlaKernel::kWgmma, SparseMlaKernel::kMmaSync}) {
    if (kernel == SparseMlaKernel::kWgmma && major != 9) continue;  // sm_90a code
    for (const auto& s : shapes) check_sparse_mla(s, seed++, kernel, inputs);
  }
}

// Shapes of 64 heads × 128 (the tensor-core kernels'). The wgmma kernel computes blocks of 8 queries against 64-key
// tiles through a 4-stage ring; the mma.sync kernel blocks of 2 queries against 128-key tiles.
const IndexerShape kTensorCoreShapes[] = {
    kLastQueries,
    {"causal, zigzag-strided positions", 21, 517, 64, 128, 5, 23, true},
    kKeysOnePastATile,
    {"causal, odd key count, positions past the keys", 9, 255, 64, 128, 250, 3, true},
    kRaggedBlock,
    {"not causal, one block of 8 queries, keys a multiple of the tile", 8, 128, 64, 128, 0, 1, false},
    kFromPositionZero,
    kNegativePositions,
    kDescendingPositions,
    {"causal, 16 key tiles: the k ring wraps 4 times", 9, 1000, 64, 128, 990, 1, true},
    kOneKey,
};

}  // namespace

TEST_CASE("the DSA indexer's scores equal a double-precision host sum on ragged shapes", "[gpu]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  REQUIRE(devices > 0);
  std::uint32_t seed = 11;
  for (const auto& s : kTensorCoreShapes) check_indexer(s, seed++);
  check_indexer({"general path, 8 heads x 32", 13, 70, 8, 32, 57, 1, true}, seed++);
}

TEST_CASE("the DSA indexer's wgmma, mma.sync and reference kernels each equal a double-precision host sum", "[gpu]") {
  std::uint32_t seed = 101;
  for (const auto kernel : {IndexerKernel::kWgmma, IndexerKernel::kMmaSync}) {
    for (const auto& s : kTensorCoreShapes) check_indexer(s, seed++, kernel);
  }
  check_indexer({"64 heads x 128 on the reference kernel", 5, 90, 64, 128, 60, 7, true}, seed++,
                IndexerKernel::kReference);
  check_indexer({"general shape, not causal", 4, 33, 3, 20, 0, 1, false}, seed++, IndexerKernel::kReference);
}

TEST_CASE("the DSA indexer runs on wgmma on Hopper at 64 heads x 128 and falls back by shape", "[gpu]") {
  const int major = compute_capability_major();
  alignas(16) static char operand[32];
  const void* q = operand;
  const void* k = operand + 16;
  if (major == 9) CHECK(indexer_kernel_for(q, k, 16384, 16384, 64, 128) == IndexerKernel::kWgmma);
  // q rows past the copy engine's 32-bit coordinates: the mma.sync kernel.
  CHECK(indexer_kernel_for(q, k, std::int64_t{1} << 26, 16384, 64, 128) == IndexerKernel::kMmaSync);
  CHECK(indexer_kernel_for(operand + 2, k, 16, 16, 64, 128) == IndexerKernel::kReference);  // unaligned q
  CHECK(indexer_kernel_for(q, k, 16, 16, 32, 128) == IndexerKernel::kReference);            // other head count
  CHECK(indexer_kernel_for(q, k, 16, 16, 64, 64) == IndexerKernel::kReference);             // other dimension
  // A kernel that does not take the arguments launches nothing and says so.
  CHECK_FALSE(
      launch_indexer_score_on(IndexerKernel::kWgmma, q, k, nullptr, nullptr, 16, 16, 64, 64, 0, 1, true, nullptr));
  CHECK_FALSE(
      launch_indexer_score_on(IndexerKernel::kMmaSync, q, k, nullptr, nullptr, 16, 16, 32, 128, 0, 1, true, nullptr));
  CHECK(std::string(to_string(IndexerKernel::kWgmma)) == "wgmma");
}

TEST_CASE("the DSA top-k selects the k largest candidates of every row, ties and short rows included", "[gpu]") {
  check_topk(12, 20000, 2048, 1);  // DeepSeek-V3.2's k over a ragged context (float4 loads)
  check_topk(12, 4099, 2048, 2);   // a row length that is not a multiple of 4 (scalar loads)
  check_topk(6, 100, 7, 3);
  check_topk(6, 64, 64, 4);       // k = n
  check_topk(6, 40000, 2048, 5);  // long rows of 7 distinct values: thousands of ties at the k-th largest
}

TEST_CASE("the DSA top-k reads only the causal prefix of each row of the indexer's scores", "[gpu]") {
  // Two requests of 40 queries at positions 1900, 1920, ...: rows of fewer and of more values than k.
  check_topk(2 * 40, 3000, 2048, 6, {40, 1900, 20});
  // Rows of 20K-37K values ending at any offset from a float4 (n a multiple of 4: float4 loads, or not: scalar).
  check_topk(16, 40000, 2048, 7, {16, 19999, 1111});
  check_topk(16, 40001, 2048, 8, {16, 19999, 1111});
  if (paratwin::test::runs_at_this_size(1400.0 * 3000.0, 1e6)) {
    check_topk(2 * 700, 3000, 2048, 9, {700, 1500, 3});  // two requests, rows from 1501 values to the whole row
  }
}

TEST_CASE("index-sparse MLA attention on the tensor cores equals the reference kernel", "[gpu]") {
  const SparseShape shapes[] = {
      {"128 heads, causal, 100 keys per query (not a multiple of the key tile)", 2, 5, 300, 128, 100, 295, 1, true},
      {"64 heads, not causal, 64 keys per query", 1, 4, 90, 64, 64, 0, 1, false},
      {"128 heads, causal, strided positions, 2048 keys per query", 1, 3, 2500, 128, 2048, 100, 1000, true},
  };
  std::uint32_t seed = 31;
  for (const auto& s : shapes) check_sparse_mla(s, seed++);
}

TEST_CASE("index-sparse MLA attention's wgmma and mma.sync kernels each equal the reference kernel", "[gpu]") {
  // The wgmma kernel's 64-key tiles: fewer keys than one tile, one past a tile, several heads blocks, ragged counts.
  const SparseShape shapes[] = {
      {"128 heads, causal, 100 keys per query (not a multiple of the key tile)", 2, 5, 300, 128, 100, 295, 1, true},
      {"64 heads, not causal, 10 keys per query (less than a tile)", 1, 4, 90, 64, 10, 0, 1, false},
      {"192 heads (3 head blocks), causal, 65 keys per query (one past a tile)", 1, 3, 200, 192, 65, 150, 1, true},
      {"128 heads, causal, strided positions, 2048 keys per query (32 tiles through the 2-stage ring)", 1, 3, 2500, 128,
       2048, 100, 1000, true},
      {"64 heads, 2 requests, causal from position 0: early queries see few keys", 2, 6, 400, 64, 300, 0, 1, true},
  };
  check_sparse_mla_on_each_kernel(shapes, 61, SparseInputs::kRandom);
}

TEST_CASE("index-sparse MLA attention's kernels follow scores that grow along the selection order", "[gpu]") {
  // The wgmma kernel's softmax reference moves only by more than 8 (log2 units): these scores make it move several
  // times within a query's keys (kGrowingScores), which random scores never do after the first tile.
  const SparseShape shapes[] = {
      {"128 heads, 512 keys per query in ascending score order (8 tiles, 4 pairs)", 1, 3, 600, 128, 512, 0, 1, false},
      {"64 heads, 2 requests, 300 keys per query (a ragged last tile)", 2, 4, 320, 64, 300, 0, 1, false},
  };
  check_sparse_mla_on_each_kernel(shapes, 91, SparseInputs::kGrowingScores);
}

TEST_CASE("index-sparse attention outside MLA's absorbed form stays on the reference kernel", "[gpu]") {
  AttentionArgs a;
  int dummy_index = 0;
  alignas(16) static char dummy[16];
  a.q = a.k = a.v = a.out = dummy;
  a.key_index = &dummy_index;
  a.keys_per_query = 1;
  a.heads = 128;
  a.kv_heads = 1;
  a.head_dim_qk = 576;
  a.head_dim_v = 512;
  a.q_row_stride = 128 * 576;
  a.k_row_stride = a.v_row_stride = 576;
  a.out_row_stride = 128 * 512;
  CHECK(sparse_mla_attention_takes(a));
  const int major = compute_capability_major();
  if (major == 9) CHECK(sparse_mla_kernel_for(a) == SparseMlaKernel::kWgmma);
  CHECK(std::string(to_string(SparseMlaKernel::kMmaSync)) == "mma.sync");
  auto other = a;
  other.head_dim_qk = 192;  // not the 576-wide latent
  CHECK_FALSE(sparse_mla_attention_takes(other));
  other = a;
  other.heads = 96;  // not a multiple of 64 heads
  CHECK_FALSE(sparse_mla_attention_takes(other));
  other = a;
  other.v = dummy + 8;  // values not the latent rows themselves
  CHECK_FALSE(sparse_mla_attention_takes(other));
  other = a;
  other.lse = reinterpret_cast<float*>(dummy);  // the partial form (ring CP)
  CHECK_FALSE(sparse_mla_attention_takes(other));
  // Neither kernel launches what it does not take.
  CHECK_FALSE(sparse_mla_wgmma_takes(other));
  CHECK_FALSE(launch_sparse_mla_attention_on(SparseMlaKernel::kWgmma, other, nullptr));
  CHECK_FALSE(launch_sparse_mla_attention_on(SparseMlaKernel::kMmaSync, other, nullptr));
}
