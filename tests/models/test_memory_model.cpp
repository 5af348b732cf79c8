#include <catch2/catch.hpp>
#include <cstdio>

#include "models/memory_model.hpp"
#include "models/op_costs.hpp"
#include "tests/models/model_test_configs.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using Catch::Matchers::Contains;
using paratwin::test::replaced;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kH200Bytes = 141e9;  // topology/clusters/h200-sxm.yaml

ParallelConfig tp(int size, int cp = 1) {
  ParallelConfig c;
  c.tp_size = size;
  c.attn_cp_size = cp;
  return c;
}

MemoryRequest request(std::int64_t context, double gpu = kH200Bytes, double fraction = 0.8) {
  MemoryRequest r;
  r.context_tokens = context;
  r.gpu_memory_bytes = gpu;
  r.mem_fraction_static = fraction;
  return r;
}

/// FP8 bytes of one [rows × cols] weight with 128×128 block scales.
double fp8(std::int64_t rows, std::int64_t cols) {
  return static_cast<double>(rows * cols) + static_cast<double>(((rows + 127) / 128) * ((cols + 127) / 128)) * 4;
}

/// DeepSeek-V3.2's worked example: 128K tokens, --tp 8 --attn-cp-size 8 --moe-dense-tp-size 1, FP8 KV, H200.
MemoryRequest worked_example_request() {
  MemoryRequest r = request(131072);
  r.kv_dtype = DType::kFp8;
  r.dense_tp_size = 1;
  return r;
}

}  // namespace

TEST_CASE("pipeline stages split the layers as SGLang's get_pp_indices", "[models][memory]") {
  CHECK(pp_layer_ranges(32, 1) == std::vector<LayerRange>{{0, 32}});
  CHECK(pp_layer_ranges(61, 2) == std::vector<LayerRange>{{0, 31}, {31, 61}});
  CHECK(pp_layer_ranges(61, 4) == std::vector<LayerRange>{{0, 15}, {15, 30}, {30, 46}, {46, 61}});
  CHECK(pp_layer_ranges(94, 8) ==
        std::vector<LayerRange>{{0, 11}, {11, 23}, {23, 35}, {35, 47}, {47, 59}, {59, 71}, {71, 83}, {83, 94}});
  REQUIRE_THROWS_WITH(pp_layer_ranges(4, 5), Contains("--pp-size 5") && Contains("4 layers"));
  REQUIRE_THROWS_AS(pp_layer_ranges(4, 0), Error);
}

TEST_CASE("KV-cache bytes per token and layer", "[models][memory][kv]") {
  const ModelSpec v32 = load_model("deepseek-v3.2");
  CHECK(kv_bytes_per_token_per_layer(v32, tp(8), DType::kBf16) == 576 * 2 + 132);  // latent + indexer key
  CHECK(kv_bytes_per_token_per_layer(v32, tp(8), DType::kFp8) == 656 + 132);       // FlashMLA FP8 layout
  CHECK(kv_bytes_per_token_per_layer(v32, tp(8, 8), DType::kFp8) == 656 + 132);    // not sharded by TP or CP
  const ModelSpec v3 = parse_model_config(test::kDeepseekV3Config, "v3.json");
  CHECK(kv_bytes_per_token_per_layer(v3, tp(8), DType::kBf16) == 1152);
  CHECK(kv_bytes_per_token_per_layer(v3, tp(8), DType::kFp8) == 576);

  const ModelSpec llama = load_model("llama-3.1-8b");  // 8 KV heads × 128
  CHECK(kv_bytes_per_token_per_layer(llama, tp(1), DType::kBf16) == 2 * 8 * 128 * 2);
  CHECK(kv_bytes_per_token_per_layer(llama, tp(2), DType::kBf16) == 2 * 4 * 128 * 2);
  CHECK(kv_bytes_per_token_per_layer(llama, tp(8), DType::kBf16) == 2 * 1 * 128 * 2);
  CHECK(kv_bytes_per_token_per_layer(llama, tp(16), DType::kBf16) == 2 * 1 * 128 * 2);   // one head, replicated
  CHECK(kv_bytes_per_token_per_layer(llama, tp(8, 8), DType::kFp8) == 2 * 8 * 128 * 1);  // attn_tp 1
  CHECK(load_model("llama-3.1-70b").num_layers * kv_bytes_per_token_per_layer(load_model("llama-3.1-70b"), tp(1),
                                                                              DType::kBf16) ==
        327680);  // hardware-reference §6
  REQUIRE_THROWS_WITH(kv_bytes_per_token_per_layer(llama, tp(1), DType::kInt32), Contains("int32"));
  REQUIRE_THROWS_WITH(kv_bytes_per_token_per_layer(llama, tp(8, 3), DType::kBf16), Contains("--attn-cp-size 3"));
}

TEST_CASE("dense weights split over TP: each rank holds 1/tp of the matrices plus every norm", "[models][memory]") {
  const ModelSpec m = load_model("llama-3.1-8b");
  const auto c = count_parameters(m);
  for (int size : {1, 2, 4, 8}) {
    const MemoryEstimate e = estimate_memory(m, tp(size), request(1000));
    CHECK(e.weights_bytes == static_cast<double>(c.total - c.norms) * 2 / size + static_cast<double>(c.norms) * 2);
    CHECK(e.weights.norms == static_cast<double>(c.norms) * 2);
  }
  SECTION("DP attention replicates attention and the embedding; the MLP and lm_head stay split over tp") {
    ParallelConfig dp = tp(8);
    dp.dp_size = 8;
    dp.enable_dp_attention = true;
    const MemoryEstimate e = estimate_memory(m, dp, request(1000));
    CHECK(e.weights.attention == static_cast<double>(c.attention) * 2);
    CHECK(e.weights.embedding == static_cast<double>(c.embedding) * 2);
    CHECK(e.weights.lm_head == static_cast<double>(c.lm_head) * 2 / 8);
    CHECK(e.weights.dense_mlp == static_cast<double>(c.dense_mlp) * 2 / 8);
  }
  SECTION("--moe-dense-tp-size 1 replicates the dense FFN") {
    MemoryRequest r = request(1000);
    r.dense_tp_size = 1;
    CHECK(estimate_memory(m, tp(8), r).weights.dense_mlp == static_cast<double>(c.dense_mlp) * 2);
  }
}

TEST_CASE("DeepSeek-V3.2 FP8 weights per rank, by hand", "[models][memory]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  const std::int64_t h = 7168;
  // Attention per layer at attention TP 8: q_a and kv_a replicated; q_b, kv_b by rows and o_proj by cols over 8.
  const double attention_tp8 =
      fp8(1536, h) + fp8(24576 / 8, 1536) + fp8(576, h) + fp8(32768 / 8, 512) + fp8(h, 16384 / 8);
  const double attention_tp1 = fp8(1536, h) + fp8(24576, 1536) + fp8(576, h) + fp8(32768, 512) + fp8(h, 16384);
  const double indexer = fp8(8192, 1536) + fp8(128, h) + 64.0 * h * 2;  // weights_proj stays bf16
  const double router = 256.0 * h * 2 + 256 * 2;                        // gate bf16 + correction bias

  const MemoryEstimate tp8 = estimate_memory(m, tp(8), request(1024));
  CHECK(tp8.weights.attention == 61 * attention_tp8);
  CHECK(tp8.weights.indexer == 61 * indexer);
  CHECK(tp8.weights.router == 58 * router);
  CHECK(tp8.weights.dense_mlp == 3 * (2 * fp8(18432 / 8, h) + fp8(h, 18432 / 8)));
  CHECK(tp8.weights.routed_experts == 58 * 256 * (2 * fp8(2048 / 8, h) + fp8(h, 2048 / 8)));
  CHECK(tp8.weights.shared_experts == 58 * (2 * fp8(2048 / 8, h) + fp8(h, 2048 / 8)));
  CHECK(tp8.weights.embedding == 129280.0 / 8 * h * 2);
  CHECK(tp8.weights.lm_head == 129280.0 / 8 * h * 2);

  SECTION("EP 8: 32 whole experts per rank, shared experts replicated (moe_tp 1)") {
    ParallelConfig ep = tp(8);
    ep.ep_size = 8;
    const MemoryEstimate e = estimate_memory(m, ep, request(1024));
    CHECK(e.weights.routed_experts == 58 * 32 * (2 * fp8(2048, h) + fp8(h, 2048)));
    CHECK(e.weights.shared_experts == 58 * (2 * fp8(2048, h) + fp8(h, 2048)));
  }
  SECTION("attention CP 8 over tp 8: attention TP is 1, so MLA weights are whole on every CP rank") {
    const MemoryEstimate cp = estimate_memory(m, tp(8, 8), request(1024));
    CHECK(cp.weights.attention == 61 * attention_tp1);
    CHECK(cp.weights.routed_experts == tp8.weights.routed_experts);  // MoE still split over moe_tp 8
    CHECK(cp.weights_bytes - tp8.weights_bytes == 61 * (attention_tp1 - attention_tp8));
  }
  SECTION("a BF16 override doubles the quantized weights and drops their scales") {
    const MemoryEstimate bf16 = estimate_memory(load_model("deepseek-v3.2", DType::kBf16), tp(8), request(1024));
    CHECK(bf16.weights.routed_experts == 58 * 256 * 3 * (2048.0 / 8) * h * 2);
    CHECK(bf16.weights.embedding == tp8.weights.embedding);
  }
}

TEST_CASE("the KV cache is replicated on every CP rank and split over PP stages", "[models][memory][kv]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  MemoryRequest r = request(131072);
  r.kv_dtype = DType::kFp8;
  const MemoryEstimate cp1 = estimate_memory(m, tp(8), r);
  const MemoryEstimate cp8 = estimate_memory(m, tp(8, 8), r);
  CHECK(cp1.kv_bytes_per_token == 61 * 788);
  CHECK(cp1.kv_cache_bytes == 131072.0 * 61 * 788);
  CHECK(cp8.kv_cache_bytes == cp1.kv_cache_bytes);
  r.batch = 3;
  CHECK(estimate_memory(m, tp(8, 8), r).kv_cache_bytes == 3 * cp1.kv_cache_bytes);

  ParallelConfig pp = tp(8);
  pp.pp_size = 2;
  const auto stages = estimate_memory_per_stage(m, pp, request(4096));
  REQUIRE(stages.size() == 2);
  CHECK(stages[0].layers == LayerRange{0, 31});
  CHECK(stages[1].layers == LayerRange{31, 61});
  CHECK(stages[0].kv_bytes_per_token == 31 * 1284);
  CHECK(stages[1].kv_bytes_per_token == 30 * 1284);
  CHECK(stages[0].weights.lm_head == 0);
  CHECK(stages[1].weights.embedding == 0);
  CHECK(stages[1].weights.lm_head == 129280.0 / 8 * 7168 * 2);
}

TEST_CASE("pipeline stages: the largest one is reported unless a stage is asked for", "[models][memory]") {
  const ModelSpec m = load_model("llama-3.1-8b");
  ParallelConfig pp = tp(1);
  pp.pp_size = 2;
  const auto stages = estimate_memory_per_stage(m, pp, request(1000));
  const double layer = (2.0 * 4096 * 4096 + 2.0 * 1024 * 4096 + 3.0 * 4096 * 14336 + 2 * 4096) * 2;
  CHECK(stages[0].weights_bytes == 128256.0 * 4096 * 2 + 16 * layer);
  CHECK(stages[1].weights_bytes == 128256.0 * 4096 * 2 + 16 * layer + 4096 * 2);
  CHECK(estimate_memory(m, pp, request(1000)).pp_stage == 1);
  MemoryRequest first = request(1000);
  first.pp_stage = 0;
  CHECK(estimate_memory(m, pp, first).pp_stage == 0);
  // A tied model's last stage holds its own copy of the table as lm_head.
  const ModelSpec tied = parse_model_config(
      replaced(test::kTinyLlama, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true"), "tied.json");
  const auto tied_stages = estimate_memory_per_stage(tied, pp, request(10));
  CHECK(tied_stages[0].weights.embedding == 1024.0 * 64 * 2);  // vocab padded to a multiple of 64
  CHECK(tied_stages[1].weights.lm_head == 1024.0 * 64 * 2);
  CHECK(estimate_memory(tied, tp(1), request(10)).weights.lm_head == 0);
}

TEST_CASE("activation peak of a small decode step, by hand", "[models][memory][activations]") {
  // Llama-3.1-8B, tp 1, decode of 4 requests at 1000 tokens: 4 query tokens. Candidates (bf16):
  //   qkv  4·4096·2 + 4·(32 + 2·8)·128·2            =    81,920
  //   core 4·32·(128 + 128)·2                       =    65,536
  //   o    4·32·128·2 + 4·4096·2                    =    65,536
  //   mlp  4·(2·4096 + 3·14336)·2                   =   409,600
  //   lm_head logits 4·(128256·4 + 4096·2)          = 2,084,864  ← peak
  // plus the residual stream 2·4·4096·2 = 65,536.
  MemoryRequest r = request(1000);
  r.phase = Phase::kDecode;
  r.batch = 4;
  const MemoryEstimate e = estimate_memory(load_model("llama-3.1-8b"), tp(1), r);
  CHECK(e.attention_tokens == 4);
  CHECK(e.activation_peak_op == "lm_head.logits");
  CHECK(e.activation_peak_bytes == 2'084'864 + 65'536);
  CHECK(e.kv_cache_bytes == 4.0 * 1000 * 32 * 2 * 8 * 128 * 2);
}

TEST_CASE("worked example: DeepSeek-V3.2 at 128K tokens on 8 H200 with --attn-cp-size 8", "[models][memory]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  const MemoryEstimate e = estimate_memory(m, tp(8, 8), worked_example_request());
  const std::int64_t h = 7168;
  // Weights: MLA whole (attention TP 1), indexer replicated, dense FFN replicated (--moe-dense-tp-size 1), experts
  // and shared experts split over moe_tp 8, vocab split over 8.
  const double attention = 61 * (fp8(1536, h) + fp8(24576, 1536) + fp8(576, h) + fp8(32768, 512) + fp8(h, 16384));
  const double indexer = 61 * (fp8(8192, 1536) + fp8(128, h) + 64.0 * h * 2);
  const double dense = 3 * (2 * fp8(18432, h) + fp8(h, 18432));
  const double routed = 58 * 256 * (2 * fp8(256, h) + fp8(h, 256));
  const double shared = 58 * (2 * fp8(256, h) + fp8(h, 256));
  const double router = 58 * (256.0 * h * 2 + 256 * 2);
  const double vocab = 2 * (129280.0 / 8 * h * 2);
  const double norms = (61 * (2 * h + 1536 + 512 + 2 * 128) + h) * 2.0;
  CHECK(e.weights.attention == attention);
  CHECK(e.weights.indexer == indexer);
  CHECK(e.weights.dense_mlp == dense);
  CHECK(e.weights.routed_experts == routed);
  CHECK(e.weights.shared_experts == shared);
  CHECK(e.weights.router == router);
  CHECK(e.weights.norms == norms);
  CHECK(e.weights_bytes == attention + indexer + dense + routed + shared + router + vocab + norms);
  // KV: the whole 128K sequence on every CP rank, 61 layers × (656 + 132) B.
  CHECK(e.kv_cache_bytes == 131072.0 * 61 * 788);
  // Activations: 16,384 local tokens in attention; the MoE all-gathers all 131,072 (fused MoE, 64K-token chunks).
  CHECK(e.attention_tokens == 16384);
  CHECK(e.ffn_tokens == 131072);
  CHECK(e.activation_peak_op == "moe.experts");
  const double moe = 2.0 * 131072 * h * 2 + 65536.0 * 8 * (h + 256) * 2;
  CHECK(e.activation_peak_bytes == 2.0 * 16384 * h * 2 + moe);
  // Verdict: weights + KV within 0.8 × 141 GB, activations within the other 0.2.
  CHECK(e.static_budget_bytes == 0.8 * kH200Bytes);
  CHECK(e.fits);
  CHECK_THAT(e.verdict, Contains("fits"));
  CHECK(e.kv_pool_tokens == static_cast<std::int64_t>(std::floor((0.8 * kH200Bytes - e.weights_bytes) / (61.0 * 788))));
  CHECK(e.total_bytes == e.weights_bytes + e.kv_cache_bytes + e.activation_peak_bytes);

  SECTION("without CP the 128K indexer logits no longer fit unchunked; SGLang's non-CP path chunks them") {
    MemoryRequest r = worked_example_request();
    r.dense_tp_size = 0;  // dense FFN split over tp 8, as SGLang does without CP
    const MemoryEstimate no_cp = estimate_memory(m, tp(8), r);
    CHECK(no_cp.attention_tokens == 131072);
    CHECK(no_cp.activation_peak_op == "attn.indexer_logits (chunked)");
    const double free = kH200Bytes * (1 - 0.8) - 2.0 * 131072 * h * 2;
    const double rows = std::floor(0.5 * free / (131072.0 * 4));
    CHECK(no_cp.activation_peak_bytes ==
          2.0 * 131072 * h * 2 + 131072.0 * 64 * 128 + 131072.0 * 64 * 4 + rows * 131072 * 4 + 131072.0 * 2048 * 4);
  }
  SECTION("zigzag CP: each rank's logits span the prefixes of its two blocks, (2cp+1)/(2cp) of the keys") {
    MemoryRequest r = worked_example_request();
    r.moe_mode = MoeMode::kAllToAll;  // tokens stay scattered: the indexer becomes the peak
    r.cp_split = CpSplit::kZigzag;
    const MemoryEstimate zz = estimate_memory(m, tp(8, 8), r);
    CHECK(zz.activation_peak_op == "attn.indexer_logits");
    CHECK(zz.activation_peak_bytes == 2.0 * 16384 * h * 2 + 16384.0 * 64 * 128 + 16384.0 * 64 * 4 +
                                          16384.0 * (131072.0 * 17 / 16) * 4 + 16384.0 * 2048 * 4);
  }
  SECTION("--moe-dp-size 2: the MoE group is 4 ranks, gathering 4 × 16,384 tokens; experts over moe_tp 4") {
    ParallelConfig c = tp(8, 8);
    c.moe_dp_size = 2;
    const MemoryEstimate dp2 = estimate_memory(m, c, worked_example_request());
    CHECK(dp2.ffn_tokens == 4 * 16384);
    CHECK(dp2.weights.routed_experts == 58 * 256 * (2 * fp8(512, h) + fp8(h, 512)));
  }
  SECTION("on an 80 GB GPU the weights alone overflow the static pool") {
    MemoryRequest r = worked_example_request();
    r.gpu_memory_bytes = 80e9;
    const MemoryEstimate small = estimate_memory(m, tp(8, 8), r);
    CHECK_FALSE(small.fits);
    CHECK(small.kv_pool_tokens == 0);
    CHECK_THAT(small.verdict, Contains("does not fit") && Contains("> the static pool"));
  }
}

TEST_CASE("models and layouts that do not split, and bad requests, throw Errors naming the rule",
          "[models][memory][errors]") {
  const ModelSpec llama = load_model("llama-3.1-8b");
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(3), request(10)),
                      Contains("num_attention_heads 32") && Contains("attention TP size 3"));
  const ModelSpec odd_kv = parse_model_config(
      replaced(replaced(replaced(test::kTinyLlama, "\"num_attention_heads\": 8", "\"num_attention_heads\": 12"),
                        "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4"),
               "\"hidden_size\": 64", "\"hidden_size\": 96"),
      "odd.json");
  REQUIRE_THROWS_WITH(estimate_memory(odd_kv, tp(6), request(10)),
                      Contains("num_key_value_heads 4") && Contains("divide one another"));
  const ModelSpec qwen = parse_model_config(test::kTinyQwenMoe, "moe.json");
  ParallelConfig wide_ep;
  wide_ep.tp_size = 16;
  wide_ep.dp_size = 16;
  wide_ep.enable_dp_attention = true;
  wide_ep.ep_size = 16;
  REQUIRE_THROWS_WITH(estimate_memory(qwen, wide_ep, request(10)),
                      Contains("8 routed experts") && Contains("--ep-size 16"));
  ParallelConfig wide_tp;
  wide_tp.tp_size = 64;
  wide_tp.dp_size = 64;
  wide_tp.enable_dp_attention = true;
  REQUIRE_THROWS_WITH(estimate_memory(qwen, wide_tp, request(10)),
                      Contains("moe_intermediate_size 32") && Contains("MoE TP size 64"));
  ParallelConfig bad = tp(8);
  bad.ep_size = 3;
  REQUIRE_THROWS_WITH(estimate_memory(load_model("deepseek-v3.2"), bad, request(10)), Contains("--ep-size 3"));

  MemoryRequest r = request(10);
  r.gpu_memory_bytes = 0;
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(1), r), Contains("gpu_memory_bytes"));
  r = request(10);
  r.mem_fraction_static = 1.5;
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(1), r), Contains("--mem-fraction-static"));
  r = request(10);
  r.batch = 0;
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(1), r), Contains("batch"));
  r = request(10);
  r.pp_stage = 1;
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(1), r), Contains("pp_stage 1"));
  r = request(10);
  r.dense_tp_size = 3;
  REQUIRE_THROWS_WITH(estimate_memory(llama, tp(8), r), Contains("dense FFN TP size 3"));
}

// Prints the numbers of docs/models.md's worked example: `models_tests "[example]"`.
TEST_CASE("print the DeepSeek-V3.2 128K worked example", "[.example]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  const auto c = count_parameters(m);
  std::printf("DeepSeek-V3.2 parameters: total %lld, activated %lld, activated linear %lld, linear FLOP/token %.4e\n",
              static_cast<long long>(c.total), static_cast<long long>(c.activated),
              static_cast<long long>(c.activated_linear), linear_flops_per_token(m));
  for (int cp : {8, 1}) {
    MemoryRequest r = worked_example_request();
    if (cp == 1) r.dense_tp_size = 0;  // without CP, SGLang's default: dense FFN over tp
    const MemoryEstimate e = estimate_memory(m, tp(8, cp), r);
    std::printf("--tp 8 --attn-cp-size %d%s, 131072 tokens, fp8 KV, H200 141e9 B, mem_fraction_static 0.8\n", cp,
                cp == 1 ? "" : " --moe-dense-tp-size 1");
    const auto row = [](const char* what, double bytes) {
      std::printf("  %-26s %16.0f B  %9.3f GiB\n", what, bytes, bytes / kGiB);
    };
    row("attention (MLA)", e.weights.attention);
    row("indexer", e.weights.indexer);
    row("dense FFN", e.weights.dense_mlp);
    row("routed experts", e.weights.routed_experts);
    row("shared experts", e.weights.shared_experts);
    row("router", e.weights.router);
    row("embedding", e.weights.embedding);
    row("lm_head", e.weights.lm_head);
    row("norms", e.weights.norms);
    row("= weights", e.weights_bytes);
    std::printf("  KV bytes per token         %16.0f B\n", e.kv_bytes_per_token);
    row("KV cache", e.kv_cache_bytes);
    std::printf("  attention tokens %lld, FFN tokens %lld, peak op %s\n", static_cast<long long>(e.attention_tokens),
                static_cast<long long>(e.ffn_tokens), e.activation_peak_op.c_str());
    row("activation peak", e.activation_peak_bytes);
    row("total", e.total_bytes);
    row("static pool (0.8)", e.static_budget_bytes);
    row("dynamic budget", e.dynamic_budget_bytes);
    std::printf("  KV pool tokens %lld\n  %s\n", static_cast<long long>(e.kv_pool_tokens), e.verdict.c_str());
  }
}
