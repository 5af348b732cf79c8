#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "models/model_spec.hpp"
#include "models/op_costs.hpp"
#include "tests/models/model_test_configs.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using Catch::Matchers::Contains;
using paratwin::test::replaced;

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

ModelSpec tiny(const std::string& text) {
  return parse_model_config(text, "tiny.json");
}

}  // namespace

TEST_CASE("dtype names round-trip and unknown names list the accepted ones", "[models][dtype]") {
  for (DType dtype : {DType::kBf16, DType::kFp8, DType::kFp32, DType::kInt32}) {
    CHECK(parse_dtype(to_string(dtype)) == dtype);
  }
  CHECK(to_string(DType::kFp8) == "fp8");
  REQUIRE_THROWS_AS(parse_dtype("fp16"), Error);
  REQUIRE_THROWS_WITH(parse_dtype("fp16"), Contains("fp16") && Contains("bf16, fp8, fp32, int32"));
}

TEST_CASE("the zoo lists the five built-in models and every one loads", "[models][zoo]") {
  const std::vector<std::string> expected = {"deepseek-v3.2", "llama-3.1-70b", "llama-3.1-8b", "qwen3-235b-a22b",
                                             "qwen3-30b-a3b"};
  REQUIRE(model_zoo_names() == expected);
  for (const std::string& name : expected) {
    const ModelSpec model = load_model(name);
    CHECK(model.name == name);
    CHECK(model.num_layers > 0);
    CHECK(count_parameters(model).total > 0);
    CHECK_FALSE(model_zoo_config(name).empty());
  }
  REQUIRE_THROWS_WITH(model_zoo_config("gpt-2"), Contains("gpt-2") && Contains("deepseek-v3.2"));
}

TEST_CASE("DeepSeek-V3.2 is read with MLA, MoE, the DSA indexer and FP8 weights", "[models][zoo]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  CHECK(m.architecture == Architecture::kDeepseekV32);
  CHECK(m.architecture_name == "DeepseekV32ForCausalLM");
  CHECK(m.attention_kind == AttentionKind::kMla);
  CHECK(m.vocab_size == 129280);
  CHECK(m.hidden_size == 7168);
  CHECK(m.num_layers == 61);
  CHECK(m.intermediate_size == 18432);
  CHECK(m.num_attention_heads == 128);
  REQUIRE(m.mla);
  CHECK(*m.mla == MlaSpec{1536, 512, 128, 64, 128});
  CHECK(m.mla->qk_head_dim() == 192);
  CHECK(m.mla->latent_dim() == 576);
  CHECK(m.qk_head_dim() == 192);
  CHECK(m.v_head_dim() == 128);
  REQUIRE(m.indexer);
  CHECK(*m.indexer == DsaIndexerSpec{64, 128, 2048});
  REQUIRE(m.moe);
  CHECK(m.moe->num_experts == 256);
  CHECK(m.moe->experts_per_token == 8);
  CHECK(m.moe->expert_intermediate_size == 2048);
  CHECK(m.moe->num_shared_experts == 1);
  CHECK(m.moe->first_k_dense_replace == 3);
  CHECK(m.moe->n_group == 8);
  CHECK(m.moe->topk_group == 4);
  CHECK(m.moe->scoring == RouterScoring::kSigmoid);
  CHECK(m.moe->routed_scaling_factor == 2.5);
  CHECK(m.moe->norm_topk_prob);
  CHECK(m.moe->score_correction_bias);
  CHECK(m.num_nextn_predict_layers == 1);
  CHECK(m.weight_dtype == DType::kFp8);
  CHECK(m.param_dtype == DType::kBf16);
  CHECK(m.fp8_block_rows == 128);
  CHECK(m.fp8_block_cols == 128);
  CHECK_FALSE(m.is_moe_layer(0));
  CHECK_FALSE(m.is_moe_layer(2));
  CHECK(m.is_moe_layer(3));
  CHECK(m.is_moe_layer(60));
  CHECK_FALSE(m.is_moe_layer(61));
  CHECK_FALSE(m.is_moe_layer(-1));
  CHECK(m.num_moe_layers() == 58);
}

TEST_CASE("dense and Qwen3 zoo models are read with their attention and MoE structure", "[models][zoo]") {
  const ModelSpec llama = load_model("llama-3.1-8b");
  CHECK(llama.architecture == Architecture::kLlama);
  CHECK(llama.attention_kind == AttentionKind::kGqa);
  CHECK(llama.head_dim == 128);  // no head_dim field: hidden / heads
  CHECK(llama.num_kv_heads == 8);
  CHECK_FALSE(llama.moe);
  CHECK_FALSE(llama.mla);
  CHECK_FALSE(llama.qk_norm);
  CHECK(llama.weight_dtype == DType::kBf16);
  CHECK(llama.num_moe_layers() == 0);
  CHECK(llama.max_position_embeddings == 131072);
  CHECK(llama.rope_theta == 500000.0);

  const ModelSpec llama70 = load_model("llama-3.1-70b");
  CHECK(llama70.num_layers == 80);
  CHECK(llama70.hidden_size == 8192);
  CHECK(llama70.num_attention_heads == 64);
  CHECK(llama70.intermediate_size == 28672);

  const ModelSpec qwen = load_model("qwen3-30b-a3b");
  CHECK(qwen.architecture == Architecture::kQwen3Moe);
  CHECK(qwen.qk_norm);
  CHECK(qwen.head_dim == 128);  // 32 heads × 128 ≠ hidden 2048: the field wins
  REQUIRE(qwen.moe);
  CHECK(qwen.moe->num_experts == 128);
  CHECK(qwen.moe->experts_per_token == 8);
  CHECK(qwen.moe->expert_intermediate_size == 768);
  CHECK(qwen.moe->num_shared_experts == 0);
  CHECK(qwen.moe->scoring == RouterScoring::kSoftmax);
  CHECK(qwen.num_moe_layers() == 48);

  const ModelSpec big = load_model("qwen3-235b-a22b");
  CHECK(big.num_layers == 94);
  CHECK(big.moe->expert_intermediate_size == 1536);
  CHECK(big.num_kv_heads == 4);
  CHECK(big.rope_theta == 1000000.0);
  CHECK(load_model("deepseek-v3.2").rope_theta == 10000.0);
}

TEST_CASE(
    "MoE layer rules: DeepSeek's first_k_dense_replace and moe_layer_freq, Qwen3's decoder_sparse_step and "
    "mlp_only_layers",
    "[models][parse]") {
  std::string ds = replaced(test::kDeepseekV3Config, "\"moe_layer_freq\": 1", "\"moe_layer_freq\": 2");
  const ModelSpec every_other = parse_model_config(ds, "ds.json");
  CHECK_FALSE(every_other.is_moe_layer(3));  // 3 % 2 ≠ 0
  CHECK(every_other.is_moe_layer(4));
  CHECK(every_other.num_moe_layers() == 29);  // even layers in [3, 61): 4, 6, ..., 60

  std::string qwen = replaced(test::kTinyQwenMoe, "\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 2");
  qwen = replaced(qwen, "\"mlp_only_layers\": []", "\"mlp_only_layers\": [3]");
  const ModelSpec q = tiny(qwen);
  CHECK_FALSE(q.is_moe_layer(0));  // (0 + 1) % 2 ≠ 0
  CHECK(q.is_moe_layer(1));
  CHECK_FALSE(q.is_moe_layer(2));
  CHECK_FALSE(q.is_moe_layer(3));  // listed in mlp_only_layers
  CHECK(q.num_moe_layers() == 1);
  // A dense layer of a MoE model carries the dense FFN of intermediate_size.
  bool has_dense_mlp = false;
  for (const auto& w : layer_weights(q, 3)) has_dense_mlp |= w.role == WeightRole::kDenseMlp && w.rows == 128;
  CHECK(has_dense_mlp);
}

TEST_CASE("Mixtral and dense Qwen3 parse", "[models][parse]") {
  const ModelSpec mixtral =
      tiny(replaced(replaced(test::kTinyLlama, "LlamaForCausalLM", "MixtralForCausalLM"), "\"vocab_size\": 1000",
                    "\"vocab_size\": 1000, \"num_local_experts\": 8, "
                    "\"num_experts_per_tok\": 2"));
  REQUIRE(mixtral.moe);
  CHECK(mixtral.moe->num_experts == 8);
  CHECK(mixtral.moe->expert_intermediate_size == 128);
  CHECK(mixtral.num_moe_layers() == 2);
  CHECK(layer_weights(mixtral, 0).back().name == "block_sparse_moe.experts.w2.weight");

  const ModelSpec qwen3 = tiny(replaced(test::kTinyLlama, "LlamaForCausalLM", "Qwen3ForCausalLM"));
  CHECK(qwen3.qk_norm);
  CHECK(qwen3.head_dim == 128);  // Qwen3Config's default head_dim
  CHECK_FALSE(qwen3.moe);
  CHECK(qwen3.rope_theta == 10000.0);  // no rope_theta field: Hugging Face's default
}

TEST_CASE("parameter counts match the published totals", "[models][params]") {
  SECTION("Llama-3.1-8B: 8,030,261,248 (8.0 B), every parameter active") {
    const auto c = count_parameters(load_model("llama-3.1-8b"));
    const std::int64_t h = 4096, v = 128256, i = 14336, kv = 1024;
    const std::int64_t layer = 2 * h * h + 2 * kv * h + 3 * h * i + 2 * h;
    CHECK(c.total == 2 * v * h + 32 * layer + h);
    CHECK(c.total == 8'030'261'248);
    CHECK(c.activated == c.total);
    CHECK(c.activated_linear == c.total - v * h - (32 * 2 + 1) * h);
  }
  SECTION("Llama-3.1-70B: 70,553,706,496 (70.6 B)") {
    const auto c = count_parameters(load_model("llama-3.1-70b"));
    const std::int64_t h = 8192, v = 128256, i = 28672, kv = 1024;
    CHECK(c.total == 2 * v * h + 80 * (2 * h * h + 2 * kv * h + 3 * h * i + 2 * h) + h);
    CHECK(c.total == 70'553'706'496);
  }
  SECTION("Qwen3-30B-A3B: 30.5 B total, 3.3 B active") {
    const auto c = count_parameters(load_model("qwen3-30b-a3b"));
    const std::int64_t h = 2048, v = 151936, e = 128, k = 8, i = 768;
    const std::int64_t attention = 2 * 4096 * h + 2 * 512 * h + 2 * 128;
    const std::int64_t common = attention + e * h + 2 * h;  // + router + norms
    CHECK(c.total == 2 * v * h + 48 * (common + e * 3 * i * h) + h);
    CHECK(c.total == 30'532'122'624);
    CHECK(c.activated == 2 * v * h + 48 * (common + k * 3 * i * h) + h);
    CHECK(c.activated == Approx(3.3e9).epsilon(0.02));
  }
  SECTION("Qwen3-235B-A22B: 235 B total, 22 B active") {
    const auto c = count_parameters(load_model("qwen3-235b-a22b"));
    const std::int64_t h = 4096, v = 151936, e = 128, k = 8, i = 1536;
    const std::int64_t common = 2 * 8192 * h + 2 * 512 * h + 2 * 128 + e * h + 2 * h;
    CHECK(c.total == 2 * v * h + 94 * (common + e * 3 * i * h) + h);
    CHECK(c.total == Approx(235e9).epsilon(0.001));
    CHECK(c.activated == 2 * v * h + 94 * (common + k * 3 * i * h) + h);
    CHECK(c.activated == Approx(22e9).epsilon(0.01));
  }
  SECTION("DeepSeek-V3: 671 B total, 37 B activated, linear FLOPs per token ≈ 2 × activated") {
    const ModelSpec m = parse_model_config(test::kDeepseekV3Config, "deepseek-v3.json");
    const auto c = count_parameters(m);
    CHECK(c.total == Approx(671e9).epsilon(0.002));
    CHECK(c.activated == Approx(37e9).epsilon(0.02));
    // Linear FLOPs: 2 per multiply-add over every activated matrix but the embedding gather.
    CHECK(linear_flops_per_token(m) == 2.0 * static_cast<double>(c.activated_linear));
    CHECK(linear_flops_per_token(m) == Approx(2 * 37e9).epsilon(0.02));
    CHECK(c.activated - c.activated_linear == c.embedding + c.norms + 58 * 256);  // + correction biases
  }
  SECTION("DeepSeek-V3.2: the published checkpoint's 685,396,921,376 tensor elements, reproduced exactly") {
    // The checkpoint holds the 61 layers, one MTP layer (a MoE decoder layer plus eh_proj [H × 2H], enorm, hnorm,
    // shared_head.norm, its own embed_tokens and shared_head.head) and one fp32 scale per 128×128 block of every
    // FP8 weight; its tensor list is in models/zoo provenance (docs/models.md).
    const ModelSpec m = load_model("deepseek-v3.2");
    const auto c = count_parameters(m);
    CHECK(c.total == 671'877'944'064);
    const std::int64_t h = m.hidden_size, v = m.vocab_size;
    std::int64_t mtp = 2 * h * h + 3 * h + 2 * v * h;
    std::int64_t scales = 0;
    const auto add_scales = [&](const std::vector<WeightTensor>& tensors) {
      for (const auto& w : tensors) {
        if (w.quantizable) scales += w.count * ceil_div(w.rows, 128) * ceil_div(w.cols, 128);
      }
    };
    for (int layer = 0; layer < m.num_layers; ++layer) add_scales(layer_weights(m, layer));
    for (const auto& w : layer_weights(m, 3)) mtp += w.params();
    add_scales(layer_weights(m, 3));  // the MTP decoder layer
    CHECK(c.total + mtp + scales == 685'396'921'376);
    // The indexer adds 13,959,424 parameters per layer to V3.
    const auto v3 = count_parameters(parse_model_config(test::kDeepseekV3Config, "deepseek-v3.json"));
    CHECK(c.total - v3.total == 61 * (8192 * 1536 + 128 * h + 64 * h + 2 * 128));
    CHECK(c.indexer == 61 * (8192 * 1536 + 128 * h + 64 * h));
    CHECK(c.activated == Approx(38.4e9).epsilon(0.01));
  }
}

TEST_CASE("a weight-dtype override replaces the file's quantization", "[models][parse]") {
  CHECK(load_model("deepseek-v3.2", DType::kBf16).weight_dtype == DType::kBf16);
  CHECK(load_model("llama-3.1-8b", DType::kFp8).weight_dtype == DType::kFp8);
  CHECK(load_model("llama-3.1-8b", DType::kFp8).param_dtype == DType::kBf16);
  REQUIRE_THROWS_WITH(load_model("llama-3.1-8b", DType::kFp32), Contains("override") && Contains("bf16 or fp8"));
  // An unsupported quantization method is an error unless overridden.
  const std::string awq = replaced(test::kTinyLlama, "\"vocab_size\": 1000",
                                   "\"vocab_size\": 1000, \"quantization_config\": {\"quant_method\": \"awq\"}");
  REQUIRE_THROWS_WITH(tiny(awq),
                      Contains("tiny.json") && Contains("quantization_config.quant_method") && Contains("awq"));
  CHECK(parse_model_config(awq, "tiny.json", DType::kBf16).weight_dtype == DType::kBf16);
  // FP8 without weight_block_size: one scale per tensor.
  const ModelSpec per_tensor = tiny(replaced(test::kTinyLlama, "\"vocab_size\": 1000",
                                             "\"vocab_size\": 1000, \"quantization_config\": {\"quant_method\": "
                                             "\"fp8\"}"));
  CHECK(per_tensor.weight_dtype == DType::kFp8);
  CHECK(per_tensor.fp8_block_rows == 0);
}

TEST_CASE("bad config.json files throw one Error naming the file, the field and the rule", "[models][parse][errors]") {
  const std::string base = test::kTinyLlama;
  struct Case {
    std::string text, must_contain_1, must_contain_2;
  };
  const std::vector<Case> cases = {
      {"{\"architectures\": [\"LlamaForCausalLM\"], ", "malformed JSON", "tiny.json"},
      {"[1, 2]", "top level", "one JSON object"},
      {replaced(base, "\"architectures\": [\"LlamaForCausalLM\"],", ""), "'architectures' is missing",
       "LlamaForCausalLM"},
      {replaced(base, "[\"LlamaForCausalLM\"]", "[\"GPT2LMHeadModel\"]"), "GPT2LMHeadModel", "DeepseekV32ForCausalLM"},
      {replaced(base, "[\"LlamaForCausalLM\"]", "\"LlamaForCausalLM\""), "'architectures'", "non-empty list"},
      {replaced(base, "\"hidden_size\": 64,", ""), "'hidden_size' is missing", "LlamaForCausalLM requires"},
      {replaced(base, "\"hidden_size\": 64", "\"hidden_size\": \"64\""), "'hidden_size' must be an integer", "string"},
      {replaced(base, "\"hidden_size\": 64", "\"hidden_size\": 64.0"), "'hidden_size' must be an integer", "64.0"},
      {replaced(base, "\"hidden_size\": 64", "\"hidden_size\": 0"), "'hidden_size' must be a positive integer",
       "got 0"},
      {replaced(base, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": -3"), "'num_hidden_layers'",
       "positive integer, got -3"},
      {replaced(base, "\"vocab_size\": 1000", "\"vocab_size\": 99999999999"), "'vocab_size'", "paratwin's limit"},
      {replaced(base, "\"vocab_size\": 1000", "\"vocab_size\": null"), "'vocab_size' is missing", "positive"},
      {replaced(base, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": \"no\""),
       "'tie_word_embeddings' must be true or false", "string"},
      {replaced(base, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"), "'num_key_value_heads' is 3",
       "multiple"},
      {replaced(base, "\"vocab_size\": 1000", "\"vocab_size\": 1000, \"rope_theta\": 0"), "'rope_theta'",
       "positive number, got 0"},
      {replaced(base, "\"vocab_size\": 1000", "\"vocab_size\": 1000, \"rope_theta\": \"1e4\""), "'rope_theta'",
       "must be a number"},
      {replaced(base, "\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"int4\""), "'torch_dtype'", "int4"},
      {replaced(base, "\"vocab_size\": 1000", "\"vocab_size\": 1000, \"quantization_config\": 7"),
       "'quantization_config' must be an object", "number"},
      {replaced(base, "\"vocab_size\": 1000",
                "\"vocab_size\": 1000, \"quantization_config\": {\"quant_method\": \"fp8\", "
                "\"weight_block_size\": [128]}"),
       "'quantization_config.weight_block_size'", "two positive integers"},
      {replaced(test::kTinyQwenMoe, "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9"),
       "'num_experts_per_tok' is 9", "8 routed experts"},
      {replaced(test::kTinyQwenMoe, "\"mlp_only_layers\": []", "\"mlp_only_layers\": [4]"), "'mlp_only_layers'",
       "outside [0, 4)"},
      {replaced(test::kTinyQwenMoe, "\"mlp_only_layers\": []", "\"mlp_only_layers\": 1"), "'mlp_only_layers'",
       "list of layer indices"},
      {replaced(test::kTinyQwenMoe, "\"mlp_only_layers\": []", "\"mlp_only_layers\": [1, 1]"), "'mlp_only_layers'",
       "twice"},
      {replaced(test::kTinyQwenMoe, "\"num_experts\": 8,", ""), "'num_experts' is missing", "Qwen3MoeForCausalLM"},
      {replaced(test::kDeepseekV3Config, "\"q_lora_rank\": 1536", "\"q_lora_rank\": null"), "'q_lora_rank' is missing",
       "DeepseekV3ForCausalLM"},
      {replaced(test::kDeepseekV3Config, "\"scoring_func\": \"sigmoid\"", "\"scoring_func\": \"relu\""),
       "'scoring_func'", "softmax or sigmoid"},
      {replaced(test::kDeepseekV3Config, "\"topk_group\": 4", "\"topk_group\": 9"), "'topk_group' is 9", "n_group 8"},
      {replaced(test::kDeepseekV3Config, "\"n_group\": 8", "\"n_group\": 3"), "'n_group' is 3", "equal groups"},
      {replaced(test::kDeepseekV3Config, "\"first_k_dense_replace\": 3", "\"first_k_dense_replace\": 62"),
       "'first_k_dense_replace' is 62", "num_hidden_layers 61"},
      {replaced(replaced(test::kDeepseekV3Config, "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM"),
                "\"vocab_size\": 129280", "\"vocab_size\": 129280, \"index_n_heads\": 64, \"index_topk\": 2048"),
       "'index_head_dim' is missing", "DeepseekV32ForCausalLM"},
      {replaced(replaced(test::kDeepseekV3Config, "DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM"),
                "\"vocab_size\": 129280",
                "\"vocab_size\": 129280, \"index_n_heads\": 64, \"index_head_dim\": 32, \"index_topk\": 2048"),
       "'index_head_dim' is 32", "qk_rope_head_dim 64"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    REQUIRE_THROWS_AS(tiny(c.text), Error);
    REQUIRE_THROWS_WITH(tiny(c.text),
                        Contains("tiny.json") && Contains(c.must_contain_1) && Contains(c.must_contain_2));
  }
  // The base configs themselves are valid: the failures above come from the edits.
  CHECK_NOTHROW(tiny(test::kTinyLlama));
  CHECK_NOTHROW(tiny(test::kTinyQwenMoe));
  CHECK_NOTHROW(tiny(test::kDeepseekV3Config));
}

TEST_CASE("load_model reads a config.json path or a model directory, and names what it cannot find", "[models][zoo]") {
  namespace fs = std::filesystem;
  // A fresh directory per run: concurrent test runs (two build trees) must not share it.
  const fs::path dir =
      fs::temp_directory_path() / ("paratwin-models-test-" + std::to_string(std::random_device{}())) / "TinyLlama-Test";
  fs::create_directories(dir);
  {
    std::ofstream(dir / "config.json") << test::kTinyLlama;
    std::ofstream(dir / "other.json") << "{ not json";
  }
  const ModelSpec from_dir = load_model(dir.string());
  CHECK(from_dir.name == "TinyLlama-Test");
  CHECK(from_dir.hidden_size == 64);
  CHECK(load_model((dir / "config.json").string()).name == "TinyLlama-Test");
  REQUIRE_THROWS_WITH(load_model((dir / "other.json").string()), Contains("other.json") && Contains("malformed JSON"));
  REQUIRE_THROWS_WITH(load_model("no-such-model"),
                      Contains("no-such-model") && Contains("zoo") && Contains("llama-3.1-8b"));
  fs::remove_all(dir.parent_path());
}

TEST_CASE("the weight inventory shards the way SGLang does", "[models][weights]") {
  const ModelSpec m = load_model("deepseek-v3.2");
  const auto dense = layer_weights(m, 0);
  const auto moe = layer_weights(m, 3);
  const auto find = [](const std::vector<WeightTensor>& ws, const std::string& name) {
    for (const auto& w : ws) {
      if (w.name == name) return w;
    }
    FAIL("no tensor " << name);
    return WeightTensor{};
  };
  CHECK(find(dense, "self_attn.q_a_proj.weight").shard == WeightShard::kReplicated);
  CHECK(find(dense, "self_attn.q_b_proj.weight").rows == 128 * 192);
  CHECK(find(dense, "self_attn.q_b_proj.weight").shard == WeightShard::kAttnTpRows);
  CHECK(find(dense, "self_attn.kv_b_proj.weight").rows == 128 * 256);
  CHECK(find(dense, "self_attn.o_proj.weight").shard == WeightShard::kAttnTpCols);
  CHECK(find(dense, "self_attn.indexer.wq_b.weight").rows == 64 * 128);
  CHECK_FALSE(find(dense, "self_attn.indexer.weights_proj.weight").quantizable);
  CHECK(find(dense, "mlp.down_proj.weight").shard == WeightShard::kDenseTpCols);
  CHECK(find(moe, "mlp.experts.gate_proj.weight").count == 256);
  CHECK(find(moe, "mlp.experts.down_proj.weight").shard == WeightShard::kExpertCols);
  CHECK(find(moe, "mlp.shared_experts.up_proj.weight").shard == WeightShard::kMoeTpRows);
  CHECK_FALSE(find(moe, "mlp.gate.weight").quantizable);
  CHECK(find(moe, "mlp.gate.e_score_correction_bias").rows == 256);
  const auto outside = non_layer_weights(m);
  REQUIRE(outside.size() == 3);
  CHECK(outside[2].name == "lm_head.weight");
  // Tied embeddings drop lm_head.
  const ModelSpec tied = parse_model_config(
      replaced(test::kTinyLlama, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true"), "tied.json");
  CHECK(non_layer_weights(tied).size() == 2);
  const auto c = count_parameters(tied);
  CHECK(c.lm_head == 0);
  CHECK(c.activated_linear - count_parameters(tiny(test::kTinyLlama)).activated_linear == 0);
}
