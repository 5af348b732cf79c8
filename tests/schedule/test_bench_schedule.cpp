// The microbenchmark schedule of `paratwin bench`: its sweep, its group shapes, its chain and its errors.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "models/bench_schedule.hpp"
#include "models/model_spec.hpp"
#include "models/schedule_checks.hpp"
#include "models/schedule_json.hpp"
#include "topology/error.hpp"

using namespace paratwin;

namespace {

BenchScheduleOptions sweep(int gpus, std::int64_t max_bytes = std::int64_t{1} << 20) {
  BenchScheduleOptions o;
  o.gpus = gpus;
  o.max_bytes = max_bytes;
  return o;
}

}  // namespace

TEST_CASE("bench schedule: every collective kind at every doubling size on every group shape", "[bench]") {
  const std::int64_t min = 4096, max = std::int64_t{1} << 20;  // 9 sizes
  for (const int gpus : {2, 4, 8}) {
    const auto s = build_bench_schedule(sweep(gpus, max));
    INFO("gpus " << gpus);
    REQUIRE(schedule_violations(s).empty());
    const std::set<int> expected_shapes = gpus == 2 ? std::set<int>{2} : std::set<int>{gpus, 2, gpus / 2};
    for (const auto& ops : s.ranks) {
      std::map<std::pair<int, int>, std::set<std::int64_t>> sizes;  // (kind, group size) -> nccl-tests sizes
      std::set<int> shapes;
      int p2p = 0;
      for (const auto& op : ops) {
        if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
          shapes.insert(c->group_size);
          std::int64_t size = c->bytes;
          if (c->kind == CollectiveKind::kAllGather || c->kind == CollectiveKind::kReduceScatter) {
            size = c->bytes * c->group_size;
          }
          if (c->kind == CollectiveKind::kAllToAll) {
            std::int64_t sent = 0;
            for (const auto b : c->send_bytes) sent += b;
            CHECK(sent == c->bytes);
          }
          sizes[{static_cast<int>(c->kind), c->group_size}].insert(size);
        } else if (std::holds_alternative<P2POp>(op.body)) {
          ++p2p;
        }
      }
      CHECK(shapes == expected_shapes);
      CHECK(p2p == 9);
      // every kind at all 9 sizes on each group size (on 4 GPUs ATTN_TP and ATTN_CP groups are both 2 ranks)
      for (const auto& [key, got] : sizes) {
        CHECK(*got.begin() == min);
        CHECK(*got.rbegin() == max);
        CHECK(got.size() == 9);
      }
    }
  }
}

TEST_CASE("bench schedule: ops form one chain per rank and compute ops carry their costs", "[bench]") {
  const auto s = build_bench_schedule(sweep(4));
  for (const auto& ops : s.ranks) {
    std::set<std::string> kinds;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (i == 0) {
        CHECK(ops[i].deps.empty());
      } else {
        CHECK(ops[i].deps == std::vector<int>{static_cast<int>(i) - 1});
      }
      if (const auto* c = std::get_if<ComputeOp>(&ops[i].body)) {
        kinds.insert(std::string(to_string(c->kind)));
        CHECK(c->bytes > 0);
      }
    }
    CHECK(kinds.size() == 16);  // every compute kind of the IR
  }
}

TEST_CASE("bench schedule: DeepSeek-V3.2's fp8 GEMMs at the GEMM rows, block-scaled k, bf16 GEMMs unchanged",
          "[bench]") {
  const auto s = build_bench_schedule(sweep(2));
  for (const auto& ops : s.ranks) {
    std::map<std::string, const ComputeOp*> fp8;
    std::size_t bf16_gemms = 0;
    for (const auto& op : ops) {
      const auto* c = std::get_if<ComputeOp>(&op.body);
      if (c == nullptr || (c->kind != ComputeKind::kGemm && c->kind != ComputeKind::kGroupedGemm)) continue;
      if (c->dtype == DType::kFp8) {
        fp8[op.name] = c;
      } else {
        CHECK(c->dtype == DType::kBf16);
        ++bf16_gemms;
      }
    }
    CHECK(bf16_gemms == 5 * 4 + 3 + 4 + 4);  // GEMMs at 5 (n, k) × 4 rows, 3 weight-streaming, 4 MoE, 4 MLA absorb
    std::set<std::string> expected;
    for (const auto& [n, k] : {std::pair<int, int>{24576, 1536}, {36864, 7168}, {7168, 18432}}) {
      for (const int m : {256, 1024, 4096, 16384}) {
        const auto name = fmt::format("bench.gemm_fp8.m{}.n{}.k{}", m, n, k);
        expected.insert(name);
        REQUIRE(fp8.count(name) == 1);
        const ComputeOp& c = *fp8.at(name);
        CHECK(c.kind == ComputeKind::kGemm);
        CHECK((c.shape.m == m && c.shape.n == n && c.shape.k == k));
        CHECK(c.flops == Approx(2.0 * m * n * k));
      }
    }
    for (const int rows : {256, 1024}) {
      const auto name = fmt::format("bench.moe.grouped_gemm_fp8.e8.r{}", rows);
      expected.insert(name);
      REQUIRE(fp8.count(name) == 1);
      const ComputeOp& c = *fp8.at(name);
      CHECK(c.kind == ComputeKind::kGroupedGemm);
      CHECK(c.shape.group_rows == std::vector<std::int64_t>(8, rows));
      CHECK((c.shape.m == 8 * rows && c.shape.n == 4096 && c.shape.k == 7168));
    }
    std::set<std::string> got;
    for (const auto& [name, c] : fp8) {
      got.insert(name);
      CHECK(c->shape.k % 128 == 0);  // block scales: 1×128 activation groups, 128×128 weight blocks
    }
    CHECK(got == expected);
  }
}

TEST_CASE("bench schedule: MLA's absorb GEMMs as DeepSeek-V3.2 declares them, memory-bound", "[bench]") {
  const auto model = load_model("deepseek-v3.2");
  REQUIRE(model.mla);
  const auto& mla = *model.mla;
  const auto s = build_bench_schedule(sweep(2));
  std::map<std::string, const ComputeOp*> absorb;
  for (const auto& op : s.ranks[0]) {
    if (!op.name.starts_with("bench.mla.")) continue;
    const auto* c = std::get_if<ComputeOp>(&op.body);
    REQUIRE(c != nullptr);
    absorb[op.name] = c;
  }
  CHECK(absorb.size() == 4);
  for (const std::int64_t tokens : {1024, 4096}) {
    const std::vector<std::int64_t> per_head(static_cast<std::size_t>(model.num_attention_heads), tokens);
    for (const auto& [name, n, k] :
         {std::tuple<std::string, std::int64_t, std::int64_t>{"q_absorb", mla.kv_lora_rank, mla.qk_nope_head_dim},
          {"v_unabsorb", mla.v_head_dim, mla.kv_lora_rank}}) {
      const auto op = fmt::format("bench.mla.{}.t{}", name, tokens);
      REQUIRE(absorb.count(op) == 1);
      const ComputeOp& c = *absorb.at(op);
      CHECK(c.kind == ComputeKind::kGroupedGemm);
      CHECK(c.dtype == DType::kBf16);
      CHECK(c.shape.group_rows == per_head);
      CHECK((c.shape.m == model.num_attention_heads * tokens && c.shape.n == n && c.shape.k == k));
      // Memory-bound at H200's ratio (989 TFLOP/s bf16, 4.8 TB/s): what puts them on the grouped memory curve.
      CHECK(c.flops / c.bytes < 989e12 / 4.8e12);
    }
  }
}

TEST_CASE("bench schedule: DSA's sparse attention as a long prompt's queries, each with top-k keys", "[bench]") {
  const auto s = build_bench_schedule(sweep(1));
  std::set<std::int64_t> sizes;
  for (const auto& op : s.ranks[0]) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c == nullptr || c->kind != ComputeKind::kSparseAttention) continue;
    const std::int64_t t = c->shape.q_tokens;
    sizes.insert(t);
    CHECK((c->shape.q_start == t && c->shape.kv_tokens == 2 * t && c->shape.causal));
    // Every query at t or later sees at least 2,048 keys: the FLOPs count all top-k of each, as the kernel computes.
    CHECK(c->flops == Approx(2.0 * (576 + 512) * 128 * static_cast<double>(t) * 2048));
  }
  CHECK(sizes == std::set<std::int64_t>{4096, 8192});
}

TEST_CASE("bench schedule: the memory-bound kinds from one row to a long prompt", "[bench]") {
  const auto s = build_bench_schedule(sweep(1));
  std::map<ComputeKind, std::set<std::int64_t>> rows;
  for (const auto& op : s.ranks[0]) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c == nullptr) continue;
    switch (c->kind) {
      case ComputeKind::kRmsNorm:
      case ComputeKind::kResidualAdd:
      case ComputeKind::kAddRmsNorm:
      case ComputeKind::kEmbedding:
      case ComputeKind::kActivation:
      case ComputeKind::kRope:
      case ComputeKind::kKvReorder:
      case ComputeKind::kMoeRoute:
        rows[c->kind].insert(c->shape.m);
        break;
      default:
        break;
    }
  }
  CHECK(rows.size() == 8);
  for (const auto& [kind, got] : rows) {
    INFO(to_string(kind));
    CHECK(got == std::set<std::int64_t>{1, 16, 64, 256, 1024, 4096, 16384});
  }
}

TEST_CASE("bench schedule: one GPU measures compute only, and equal sweeps hash alike", "[bench]") {
  const auto one = build_bench_schedule(sweep(1));
  for (const auto& op : one.ranks[0]) CHECK(std::holds_alternative<ComputeOp>(op.body));
  CHECK(schedule_hash(build_bench_schedule(sweep(2))) == schedule_hash(build_bench_schedule(sweep(2))));
  CHECK(schedule_hash(build_bench_schedule(sweep(2))) != schedule_hash(build_bench_schedule(sweep(2, 1 << 21))));
}

TEST_CASE("bench schedule: bad sweeps are errors naming the option and the rule", "[bench]") {
  auto o = sweep(3);
  CHECK_THROWS_WITH(build_bench_schedule(o), Catch::Contains("--gpus 3"));
  o = sweep(2);
  o.max_bytes = 12288;
  CHECK_THROWS_WITH(build_bench_schedule(o), Catch::Contains("power of two"));
  o = sweep(2);
  o.min_bytes = 1 << 21;
  CHECK_THROWS_WITH(build_bench_schedule(o), Catch::Contains("min ≤ max"));
  o = sweep(8);
  o.min_bytes = 4000;
  o.max_bytes = 8000;
  CHECK_THROWS_WITH(build_bench_schedule(o), Catch::Contains("multiple of 256"));
}
