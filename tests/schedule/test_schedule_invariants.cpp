// The invariants of issue 3, for every zoo model and every scheme.
#include <algorithm>
#include <catch2/catch.hpp>

#include "models/schedule_json.hpp"
#include "models/schedule_summary.hpp"
#include "tests/schedule/schedule_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

// A handful of layers that include MoE layers where the model has them (DeepSeek's first 3 are dense).
int test_layers(const ModelSpec& m) {
  return m.moe && m.moe->first_k_dense_replace > 0 ? 5 : 2;
}

void require_sound(const Schedule& s, const std::string& what) {
  const auto violations = schedule_violations(s);
  INFO(what);
  if (!violations.empty()) FAIL(violations.front());
}

}  // namespace

TEST_CASE("every zoo model and scheme builds a sound schedule", "[schedule]") {
  for (const auto& name : model_zoo_names()) {
    const auto model = load_model(name);
    const int layers = test_layers(model);
    const bool moe = model.moe.has_value();
    struct Case {
      std::string what;
      ParallelConfig config;
      ScheduleOptions options;
    };
    std::vector<Case> cases = {
        {"cp4 round-robin allgather", cp_config(4, 4), prefill(4096, layers)},
        {"cp4 zigzag allgather", cp_config(4, 4), prefill(4099, layers, CpSplit::kZigzag)},
        {"tp2 cp2", cp_config(4, 2), prefill(2048, layers)},
        {"pp2 cp2 chunked", cp_config(2, 2, 1, 2), prefill(4096, std::max(layers, 2))},
        {"dp2 attention, cp2", cp_config(4, 2, 1, 1, 2), prefill(1024, layers, CpSplit::kZigzag)},
    };
    cases.back().options.batch = 2;
    if (!model.indexer) {
      cases.push_back(
          {"cp4 ring zigzag", cp_config(4, 4), prefill(4096, layers, CpSplit::kZigzag, CpAlgorithm::kRing)});
      cases.push_back(
          {"cp2 ring round-robin", cp_config(2, 2), prefill(1000, layers, CpSplit::kRoundRobin, CpAlgorithm::kRing)});
      cases.push_back({"cp4 ulysses", cp_config(4, 4), prefill(4096, layers, CpSplit::kZigzag, CpAlgorithm::kUlysses)});
    }
    if (moe) {
      cases.push_back({"cp4 ep4 a2a", cp_config(4, 4, 4), prefill(4096, layers)});
      cases.push_back({"tp4 attn_tp2 ep4 a2a", cp_config(4, 2, 4), prefill(2048, layers)});
    }
    ScheduleOptions decode;
    decode.phase = Phase::kDecode;
    decode.prompt_tokens = 8192;
    decode.batch = 8;
    decode.layers = layers;
    cases.push_back({"decode tp4", cp_config(4, 1), decode});
    cases.push_back({"decode dp4 attention", cp_config(4, 1, moe ? 4 : 1, 1, 4), decode});
    for (const auto& c : cases) {
      const auto s = build_schedule(model, c.config, c.options);
      require_sound(s, name + ": " + c.what);
      CHECK(schedule_from_json(schedule_to_json(s), "round trip") == s);
    }
  }
}

TEST_CASE("CP=N does the work of CP=1, plus only what it adds on purpose", "[schedule]") {
  SECTION("Llama-3.1-8B: equal FLOPs within 0.1 % (only the logits are repeated)") {
    const auto model = load_model("llama-3.1-8b");
    const auto one = build_schedule(model, cp_config(1, 1), prefill(32768, 4));
    const auto eight = build_schedule(model, cp_config(8, 8), prefill(32768, 4));
    CHECK(total_flops(eight) == Approx(total_flops(one)).epsilon(1e-3));
  }
  SECTION("DeepSeek-V3.2: equal within 1 % (the router runs on all gathered tokens on every CP rank)") {
    const auto model = load_model("deepseek-v3.2");
    const auto one = build_schedule(model, cp_config(1, 1), prefill(16384, 5));
    const auto eight = build_schedule(model, cp_config(8, 8), prefill(16384, 5));
    CHECK(total_flops(eight) == Approx(total_flops(one)).epsilon(1e-2));
    CHECK(total_flops(eight) >= total_flops(one));
  }
}

TEST_CASE("the KV all-gather moves (N-1)/N x tokens x KV bytes per token per rank per layer", "[schedule]") {
  for (const auto* name : {"deepseek-v3.2", "llama-3.1-70b", "qwen3-30b-a3b"}) {
    const auto model = load_model(name);
    const int cp = 8;
    const std::int64_t tokens = 65536;
    const auto s = build_schedule(model, cp_config(8, cp), prefill(tokens, 1));
    // KV bytes per token on a rank: MLA latent (kv_lora + rope) or 2 × kv heads × head_dim, bf16.
    const double kv_row = model.mla ? 2.0 * static_cast<double>(model.mla->latent_dim())
                                    : 2.0 * 2 * static_cast<double>(model.num_kv_heads * model.head_dim);
    for (std::size_t r = 0; r < s.ranks.size(); ++r) {
      double sent = 0;
      for (const auto& op : s.ranks[r]) {
        const auto* c = std::get_if<CollectiveOp>(&op.body);
        if (c != nullptr && op.name == "L0.attn.kv_all_gather") sent += sent_bytes(*c, static_cast<int>(r));
      }
      INFO(name << " rank " << r);
      CHECK(sent == Approx(static_cast<double>(cp - 1) / cp * tokens * kv_row));
    }
  }
}

TEST_CASE("zigzag and round-robin splits balance causal attention over CP ranks", "[schedule]") {
  const std::int64_t tokens = 131072;
  for (const auto* name : {"llama-3.1-8b", "deepseek-v3.2"}) {
    const auto model = load_model(name);
    for (const auto split : {CpSplit::kZigzag, CpSplit::kRoundRobin}) {
      const auto s = build_schedule(model, cp_config(8, 8), prefill(tokens, 1, split));
      std::vector<double> per_rank;
      for (int r = 0; r < 8; ++r) {
        per_rank.push_back(
            rank_flops(s, r, {ComputeKind::kAttention, ComputeKind::kSparseAttention, ComputeKind::kIndexerScore}));
      }
      const auto [lo, hi] = std::minmax_element(per_rank.begin(), per_rank.end());
      INFO(name << " " << to_string(split));
      CHECK(*hi / *lo <= 1.05);
    }
  }
}

TEST_CASE("bad combinations are clear errors", "[schedule]") {
  const auto llama = load_model("llama-3.1-8b");
  const auto deepseek = load_model("deepseek-v3.2");
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(3, 3), prefill(4096, 1, CpSplit::kZigzag, CpAlgorithm::kUlysses)),
                    Catch::Contains("ulysses") && Catch::Contains("--attn-cp-size 3"));
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(8, 8), prefill(15, 1, CpSplit::kZigzag)),
                    Catch::Contains("2 × --attn-cp-size = 16"));
  CHECK_THROWS_WITH(build_schedule(deepseek, cp_config(8, 8), prefill(4096, 5, CpSplit::kZigzag, CpAlgorithm::kRing)),
                    Catch::Contains("DSA"));
  auto gather_with_ep = prefill(4096, 5);
  gather_with_ep.moe_mode = MoeMode::kGather;
  CHECK_THROWS_WITH(build_schedule(deepseek, cp_config(8, 8, 8), gather_with_ep), Catch::Contains("--moe-mode gather"));
  auto batch = prefill(4096, 1, CpSplit::kZigzag);
  batch.batch = 2;
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(4, 4), batch), Catch::Contains("batch size 1"));
  ScheduleOptions decode;
  decode.phase = Phase::kDecode;
  decode.prompt_tokens = 100;
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(4, 4), decode), Catch::Contains("prefill-only"));
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(8, 8), prefill(0, 1)), Catch::Contains("--prompt-len 0"));
  CHECK_THROWS_WITH(build_schedule(llama, cp_config(1, 1), prefill(10, 33)), Catch::Contains("--layers 33"));
  ParallelConfig huge;
  huge.tp_size = 1024;
  huge.pp_size = 64;
  CHECK_THROWS_WITH(build_schedule(llama, huge, prefill(1 << 20, 0)), Catch::Contains("at least one layer"));
}

TEST_CASE("the schedule JSON reader names what is wrong", "[schedule]") {
  const auto s = build_schedule(load_model("llama-3.1-8b"), cp_config(2, 2), prefill(64, 1));
  auto text = schedule_to_json(s);
  CHECK_THROWS_WITH(schedule_from_json("{", "x.json"), Catch::Contains("x.json") && Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(schedule_from_json(R"({"format": "other"})", "x.json"), Catch::Contains("paratwin-schedule"));
  const auto pos = text.find("\"stream\":\"compute\"");
  REQUIRE(pos != std::string::npos);
  text.replace(pos, 18, "\"stream\":\"gpu\"");
  CHECK_THROWS_WITH(schedule_from_json(text, "x.json"), Catch::Contains("rank 0 op 0") && Catch::Contains("gpu"));
}
