#include "models/model_spec.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "topology/error.hpp"

namespace paratwin {

namespace {

using Json = nlohmann::json;

/// Largest accepted dimension: keeps every tensor's rows × cols × count inside int64 (2^20 · 2^20 · 2^14).
constexpr std::int64_t kMaxDim = std::int64_t{1} << 20;
constexpr std::int64_t kMaxExperts = std::int64_t{1} << 14;
constexpr std::int64_t kMaxLayers = std::int64_t{1} << 12;

constexpr std::array<std::pair<Architecture, std::string_view>, 6> kArchitectures = {{
    {Architecture::kDeepseekV3, "DeepseekV3ForCausalLM"},
    {Architecture::kDeepseekV32, "DeepseekV32ForCausalLM"},
    {Architecture::kLlama, "LlamaForCausalLM"},
    {Architecture::kQwen3, "Qwen3ForCausalLM"},
    {Architecture::kQwen3Moe, "Qwen3MoeForCausalLM"},
    {Architecture::kMixtral, "MixtralForCausalLM"},
}};

std::string supported_architectures() {
  std::string list;
  for (const auto& [arch, name] : kArchitectures) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  return list;
}

/// A short rendering of a JSON value for error messages.
std::string show(const Json& value) {
  std::string text = value.dump();
  if (text.size() > 48) text = text.substr(0, 45) + "...";
  return fmt::format("{} ({})", text, value.type_name());
}

/// Reads typed fields of one JSON object; every failure names the source, the field and the rule.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string_view source, std::string_view prefix, std::string_view owner)
      : object_(object), source_(source), prefix_(prefix), owner_(owner) {}

  /// The value of `key`, or nullptr when absent or null (null means "not set" in transformers configs).
  [[nodiscard]] const Json* find(const char* key) const {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  [[noreturn]] void bad(const char* key, std::string_view rule) const {
    fail("{}: field '{}{}' {}", source_, prefix_, key, rule);
  }

  /// A required integer in [1, max].
  [[nodiscard]] std::int64_t positive(const char* key, std::int64_t max = kMaxDim) const {
    const Json* value = find(key);
    if (value == nullptr) bad(key, fmt::format("is missing: {} requires a positive integer here", owner_));
    return checked(key, *value, 1, max);
  }
  /// An optional integer in [1, max], or `fallback` when absent.
  [[nodiscard]] std::int64_t positive_or(const char* key, std::int64_t fallback, std::int64_t max = kMaxDim) const {
    const Json* value = find(key);
    return value == nullptr ? fallback : checked(key, *value, 1, max);
  }
  /// An optional integer in [0, max], or `fallback` when absent.
  [[nodiscard]] std::int64_t non_negative_or(const char* key, std::int64_t fallback, std::int64_t max = kMaxDim) const {
    const Json* value = find(key);
    return value == nullptr ? fallback : checked(key, *value, 0, max);
  }
  [[nodiscard]] bool boolean_or(const char* key, bool fallback) const {
    const Json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) bad(key, fmt::format("must be true or false, got {}", show(*value)));
    return value->get<bool>();
  }
  [[nodiscard]] double number_or(const char* key, double fallback) const {
    const Json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_number()) bad(key, fmt::format("must be a number, got {}", show(*value)));
    const double number = value->get<double>();
    if (!(number > 0)) bad(key, fmt::format("must be a positive number, got {}", number));
    return number;
  }
  [[nodiscard]] std::string string_or(const char* key, std::string_view fallback) const {
    const Json* value = find(key);
    if (value == nullptr) return std::string(fallback);
    if (!value->is_string()) bad(key, fmt::format("must be a string, got {}", show(*value)));
    return value->get<std::string>();
  }
  /// An optional list of integers in [0, max), each once.
  [[nodiscard]] std::vector<int> index_list_or_empty(const char* key, std::int64_t max) const {
    const Json* value = find(key);
    std::vector<int> list;
    if (value == nullptr) return list;
    if (!value->is_array()) bad(key, fmt::format("must be a list of layer indices, got {}", show(*value)));
    for (const Json& item : *value) {
      if (!item.is_number_integer()) {
        bad(key, fmt::format("must hold integer layer indices, got {}", show(item)));
      }
      // Unsigned values past int64 are clamped to `max`, which is out of range anyway.
      const std::int64_t index =
          item.is_number_unsigned()
              ? static_cast<std::int64_t>(std::min(item.get<std::uint64_t>(), static_cast<std::uint64_t>(max)))
              : item.get<std::int64_t>();
      if (index < 0 || index >= max) {
        bad(key, fmt::format("holds layer {}, outside [0, {}) (num_hidden_layers)", item.dump(), max));
      }
      list.push_back(static_cast<int>(index));
    }
    std::sort(list.begin(), list.end());
    if (std::adjacent_find(list.begin(), list.end()) != list.end()) {
      bad(key, "lists a layer twice");
    }
    return list;
  }

 private:
  [[nodiscard]] std::int64_t checked(const char* key, const Json& value, std::int64_t min, std::int64_t max) const {
    if (!value.is_number_integer()) bad(key, fmt::format("must be an integer, got {}", show(value)));
    if (value.is_number_unsigned() && value.get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
      bad(key, fmt::format("is {}, above paratwin's limit of {}", value.dump(), max));
    }
    const auto number = value.get<std::int64_t>();
    if (number < min) {
      bad(key, fmt::format("must be {}, got {}", min == 1 ? "a positive integer" : "a non-negative integer", number));
    }
    if (number > max) bad(key, fmt::format("is {}, above paratwin's limit of {}", number, max));
    return number;
  }

  const Json& object_;
  std::string_view source_;
  std::string_view prefix_;
  std::string_view owner_;
};

Architecture parse_architecture(const Json& root, std::string_view source, std::string& name) {
  const auto it = root.find("architectures");
  if (it == root.end() || it->is_null()) {
    fail("{}: field 'architectures' is missing: a config.json names its model class there (supported: {})", source,
         supported_architectures());
  }
  if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
    fail("{}: field 'architectures' must be a non-empty list of class names, got {}", source, show(*it));
  }
  name = (*it)[0].get<std::string>();
  for (const auto& [arch, arch_name] : kArchitectures) {
    if (arch_name == name) return arch;
  }
  fail("{}: field 'architectures' names '{}', which paratwin does not model (supported: {})", source, name,
       supported_architectures());
}

DType parse_param_dtype(const FieldReader& fields, const Json& root) {
  // transformers ≥ 4.56 writes "dtype"; older files "torch_dtype".
  const char* key = root.contains("dtype") ? "dtype" : "torch_dtype";
  const std::string text = fields.string_or(key, "bfloat16");
  if (text == "bfloat16" || text == "float16") return DType::kBf16;
  if (text == "float32") return DType::kFp32;
  fields.bad(key, fmt::format("is '{}': paratwin models bfloat16, float16 or float32 checkpoints", text));
}

void parse_quantization(ModelSpec& model, const Json& root, std::string_view source,
                        std::optional<DType> override_dtype) {
  if (override_dtype) {
    if (*override_dtype != DType::kBf16 && *override_dtype != DType::kFp8) {
      fail("{}: weight dtype override '{}' is not supported: use bf16 or fp8", source, to_string(*override_dtype));
    }
  }
  const auto it = root.find("quantization_config");
  bool file_fp8 = false;
  if (it != root.end() && !it->is_null()) {
    if (!it->is_object()) fail("{}: field 'quantization_config' must be an object, got {}", source, show(*it));
    const FieldReader qc(*it, source, "quantization_config.", "quantization_config");
    const std::string method = qc.string_or("quant_method", "");
    if (method == "fp8") {
      file_fp8 = true;
      const Json* block = qc.find("weight_block_size");
      if (block == nullptr) {
        model.fp8_block_rows = 0;  // per-tensor scales
        model.fp8_block_cols = 0;
      } else {
        if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
            !(*block)[1].is_number_integer() || (*block)[0].get<std::int64_t>() < 1 ||
            (*block)[1].get<std::int64_t>() < 1) {
          qc.bad("weight_block_size", fmt::format("must be two positive integers [rows, cols], got {}", show(*block)));
        }
        model.fp8_block_rows = std::min((*block)[0].get<std::int64_t>(), kMaxDim);
        model.fp8_block_cols = std::min((*block)[1].get<std::int64_t>(), kMaxDim);
      }
    } else if (!override_dtype) {
      qc.bad("quant_method",
             fmt::format("is '{}': paratwin models fp8 checkpoints only (override the weight dtype with bf16 or fp8 "
                         "to model this one anyway)",
                         method));
    }
  }
  if (override_dtype) {
    model.weight_dtype = *override_dtype;
  } else {
    model.weight_dtype = file_fp8 ? DType::kFp8 : model.param_dtype;
  }
}

void parse_deepseek(ModelSpec& model, const FieldReader& f, int layers) {
  const std::string owner = model.architecture_name;
  MlaSpec mla;
  mla.q_lora_rank = f.positive("q_lora_rank");
  mla.kv_lora_rank = f.positive("kv_lora_rank");
  mla.qk_nope_head_dim = f.positive("qk_nope_head_dim");
  mla.qk_rope_head_dim = f.positive("qk_rope_head_dim");
  mla.v_head_dim = f.positive("v_head_dim");
  model.mla = mla;
  model.attention_kind = AttentionKind::kMla;
  model.head_dim = 0;

  MoeSpec moe;
  moe.num_experts = f.positive("n_routed_experts", kMaxExperts);
  moe.experts_per_token = f.positive("num_experts_per_tok", kMaxExperts);
  moe.expert_intermediate_size = f.positive("moe_intermediate_size");
  moe.num_shared_experts = f.non_negative_or("n_shared_experts", 0, kMaxExperts);
  moe.first_k_dense_replace = static_cast<int>(f.non_negative_or("first_k_dense_replace", 0, kMaxLayers));
  moe.moe_layer_freq = static_cast<int>(f.positive_or("moe_layer_freq", 1, kMaxLayers));
  moe.n_group = f.positive_or("n_group", 1, kMaxExperts);
  moe.topk_group = f.positive_or("topk_group", 1, kMaxExperts);
  const std::string scoring = f.string_or("scoring_func", "softmax");
  if (scoring == "sigmoid") {
    moe.scoring = RouterScoring::kSigmoid;
  } else if (scoring == "softmax") {
    moe.scoring = RouterScoring::kSoftmax;
  } else {
    f.bad("scoring_func", fmt::format("is '{}': use softmax or sigmoid", scoring));
  }
  moe.routed_scaling_factor = f.number_or("routed_scaling_factor", 1.0);
  moe.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
  moe.score_correction_bias = f.string_or("topk_method", "greedy") == "noaux_tc";
  if (moe.first_k_dense_replace > layers) {
    f.bad("first_k_dense_replace",
          fmt::format("is {}, more than num_hidden_layers {}", moe.first_k_dense_replace, layers));
  }
  if (moe.num_experts % moe.n_group != 0) {
    f.bad("n_group",
          fmt::format("is {}: n_routed_experts {} must split into equal groups", moe.n_group, moe.num_experts));
  }
  if (moe.topk_group > moe.n_group) {
    f.bad("topk_group", fmt::format("is {}, more than n_group {}", moe.topk_group, moe.n_group));
  }
  model.moe = moe;
  model.num_nextn_predict_layers = static_cast<int>(f.non_negative_or("num_nextn_predict_layers", 0, kMaxLayers));

  if (model.architecture == Architecture::kDeepseekV32) {
    DsaIndexerSpec indexer;
    indexer.heads = f.positive("index_n_heads");
    indexer.head_dim = f.positive("index_head_dim");
    indexer.topk = f.positive("index_topk");
    if (indexer.head_dim < mla.qk_rope_head_dim) {
      f.bad("index_head_dim", fmt::format("is {}, less than qk_rope_head_dim {}: the indexer key carries the rotary "
                                          "dims",
                                          indexer.head_dim, mla.qk_rope_head_dim));
    }
    model.indexer = indexer;
  }
}

/// head_dim for MHA/GQA families: the field when present, else the family's transformers default.
std::int64_t parse_head_dim(const ModelSpec& model, const FieldReader& f) {
  if (f.find("head_dim") != nullptr) return f.positive("head_dim");
  if (model.architecture == Architecture::kQwen3 || model.architecture == Architecture::kQwen3Moe) {
    return 128;  // Qwen3Config / Qwen3MoeConfig default
  }
  if (model.hidden_size % model.num_attention_heads != 0) {
    f.bad("num_attention_heads", fmt::format("is {}: without a head_dim field, hidden_size {} must be a multiple of "
                                             "it",
                                             model.num_attention_heads, model.hidden_size));
  }
  return model.hidden_size / model.num_attention_heads;
}

}  // namespace

ModelSpec parse_model_config(std::string_view json_text, std::string_view source, std::optional<DType> weight_dtype) {
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::parse_error& e) {
    fail("{}: malformed JSON: {}", source, e.what());
  }
  if (!root.is_object()) fail("{}: the top level is {}, but a config.json is one JSON object", source, show(root));

  ModelSpec model;
  model.name = std::string(source);
  model.architecture = parse_architecture(root, source, model.architecture_name);
  const FieldReader f(root, source, "", model.architecture_name);

  model.vocab_size = f.positive("vocab_size");
  model.hidden_size = f.positive("hidden_size");
  model.num_layers = static_cast<int>(f.positive("num_hidden_layers", kMaxLayers));
  model.num_attention_heads = f.positive("num_attention_heads");
  model.intermediate_size = f.positive("intermediate_size");
  model.num_kv_heads = f.positive_or("num_key_value_heads", model.num_attention_heads);
  model.max_position_embeddings = f.positive_or("max_position_embeddings", 0, std::numeric_limits<std::int32_t>::max());
  model.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  model.rope_theta = f.number_or("rope_theta", 10000.0);
  model.attention_bias = f.boolean_or("attention_bias", false);
  model.param_dtype = parse_param_dtype(f, root);

  switch (model.architecture) {
    case Architecture::kDeepseekV3:
    case Architecture::kDeepseekV32:
      parse_deepseek(model, f, model.num_layers);
      break;
    case Architecture::kLlama:
    case Architecture::kQwen3:
    case Architecture::kQwen3Moe:
    case Architecture::kMixtral: {
      model.head_dim = parse_head_dim(model, f);
      if (model.num_attention_heads % model.num_kv_heads != 0) {
        f.bad("num_key_value_heads", fmt::format("is {}: num_attention_heads {} must be a multiple of it",
                                                 model.num_kv_heads, model.num_attention_heads));
      }
      model.attention_kind =
          model.num_kv_heads == model.num_attention_heads ? AttentionKind::kMha : AttentionKind::kGqa;
      model.qk_norm = model.architecture == Architecture::kQwen3 || model.architecture == Architecture::kQwen3Moe;
      if (model.architecture == Architecture::kQwen3Moe) {
        MoeSpec moe;
        moe.num_experts = f.positive("num_experts", kMaxExperts);
        moe.experts_per_token = f.positive("num_experts_per_tok", kMaxExperts);
        moe.expert_intermediate_size = f.positive("moe_intermediate_size");
        moe.decoder_sparse_step = static_cast<int>(f.positive_or("decoder_sparse_step", 1, kMaxLayers));
        moe.mlp_only_layers = f.index_list_or_empty("mlp_only_layers", model.num_layers);
        moe.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
        model.moe = moe;
      } else if (model.architecture == Architecture::kMixtral) {
        MoeSpec moe;
        moe.num_experts = f.positive("num_local_experts", kMaxExperts);
        moe.experts_per_token = f.positive("num_experts_per_tok", kMaxExperts);
        moe.expert_intermediate_size = model.intermediate_size;
        moe.norm_topk_prob = true;  // Mixtral renormalises its top-k softmax weights
        model.moe = moe;
      }
      break;
    }
  }
  if (model.moe && model.moe->experts_per_token > model.moe->num_experts) {
    f.bad("num_experts_per_tok",
          fmt::format("is {}, more than the {} routed experts", model.moe->experts_per_token, model.moe->num_experts));
  }
  parse_quantization(model, root, source, weight_dtype);
  return model;
}

bool ModelSpec::is_moe_layer(int layer) const {
  if (!moe || layer < 0 || layer >= num_layers) return false;
  if (layer < moe->first_k_dense_replace) return false;
  if (layer % moe->moe_layer_freq != 0) return false;
  if ((layer + 1) % moe->decoder_sparse_step != 0) return false;
  return !std::binary_search(moe->mlp_only_layers.begin(), moe->mlp_only_layers.end(), layer);
}

int ModelSpec::num_moe_layers() const {
  int count = 0;
  for (int layer = 0; layer < num_layers; ++layer) count += is_moe_layer(layer) ? 1 : 0;
  return count;
}

std::int64_t ModelSpec::qk_head_dim() const {
  return mla ? mla->qk_head_dim() : head_dim;
}
std::int64_t ModelSpec::v_head_dim() const {
  return mla ? mla->v_head_dim : head_dim;
}

// ---------------------------------------------------------------------------------------------------------------
// Weight inventory
// ---------------------------------------------------------------------------------------------------------------

namespace {

WeightTensor linear(std::string name, std::int64_t rows, std::int64_t cols, WeightShard shard, WeightRole role,
                    bool quantizable = true, std::int64_t count = 1) {
  return WeightTensor{std::move(name), rows, cols, count, quantizable, true, shard, role};
}
WeightTensor vector(std::string name, std::int64_t length, WeightShard shard, WeightRole role) {
  return WeightTensor{std::move(name), length, 1, 1, false, false, shard, role};
}

void add_mla_attention(const ModelSpec& m, std::vector<WeightTensor>& w) {
  const MlaSpec& a = *m.mla;
  const std::int64_t h = m.num_attention_heads;
  w.push_back(linear("self_attn.q_a_proj.weight", a.q_lora_rank, m.hidden_size, WeightShard::kReplicated,
                     WeightRole::kAttention));
  w.push_back(vector("self_attn.q_a_layernorm.weight", a.q_lora_rank, WeightShard::kReplicated, WeightRole::kNorm));
  w.push_back(linear("self_attn.q_b_proj.weight", h * a.qk_head_dim(), a.q_lora_rank, WeightShard::kAttnTpRows,
                     WeightRole::kAttention));
  w.push_back(linear("self_attn.kv_a_proj_with_mqa.weight", a.latent_dim(), m.hidden_size, WeightShard::kReplicated,
                     WeightRole::kAttention));
  w.push_back(vector("self_attn.kv_a_layernorm.weight", a.kv_lora_rank, WeightShard::kReplicated, WeightRole::kNorm));
  w.push_back(linear("self_attn.kv_b_proj.weight", h * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank,
                     WeightShard::kAttnTpRows, WeightRole::kAttention));
  w.push_back(linear("self_attn.o_proj.weight", m.hidden_size, h * a.v_head_dim, WeightShard::kAttnTpCols,
                     WeightRole::kAttention));
  if (m.indexer) {
    // SGLang's Indexer uses ReplicatedLinear for all three projections; weights_proj stays bf16 in the FP8
    // checkpoint.
    const DsaIndexerSpec& x = *m.indexer;
    w.push_back(linear("self_attn.indexer.wq_b.weight", x.heads * x.head_dim, a.q_lora_rank, WeightShard::kReplicated,
                       WeightRole::kIndexer));
    w.push_back(linear("self_attn.indexer.wk.weight", x.head_dim, m.hidden_size, WeightShard::kReplicated,
                       WeightRole::kIndexer));
    w.push_back(vector("self_attn.indexer.k_norm.weight", x.head_dim, WeightShard::kReplicated, WeightRole::kNorm));
    w.push_back(vector("self_attn.indexer.k_norm.bias", x.head_dim, WeightShard::kReplicated, WeightRole::kNorm));
    w.push_back(linear("self_attn.indexer.weights_proj.weight", x.heads, m.hidden_size, WeightShard::kReplicated,
                       WeightRole::kIndexer, /*quantizable=*/false));
  }
}

void add_gqa_attention(const ModelSpec& m, std::vector<WeightTensor>& w) {
  const std::int64_t q = m.num_attention_heads * m.head_dim;
  const std::int64_t kv = m.num_kv_heads * m.head_dim;
  w.push_back(linear("self_attn.q_proj.weight", q, m.hidden_size, WeightShard::kAttnTpRows, WeightRole::kAttention));
  w.push_back(linear("self_attn.k_proj.weight", kv, m.hidden_size, WeightShard::kAttnTpKvRows, WeightRole::kAttention));
  w.push_back(linear("self_attn.v_proj.weight", kv, m.hidden_size, WeightShard::kAttnTpKvRows, WeightRole::kAttention));
  w.push_back(linear("self_attn.o_proj.weight", m.hidden_size, q, WeightShard::kAttnTpCols, WeightRole::kAttention));
  if (m.attention_bias) {
    w.push_back(vector("self_attn.q_proj.bias", q, WeightShard::kAttnTpRows, WeightRole::kAttention));
    w.push_back(vector("self_attn.k_proj.bias", kv, WeightShard::kAttnTpKvRows, WeightRole::kAttention));
    w.push_back(vector("self_attn.v_proj.bias", kv, WeightShard::kAttnTpKvRows, WeightRole::kAttention));
    // A row-parallel layer adds its bias once after the reduction; every rank holds all of it.
    w.push_back(vector("self_attn.o_proj.bias", m.hidden_size, WeightShard::kReplicated, WeightRole::kAttention));
  }
  if (m.qk_norm) {
    w.push_back(vector("self_attn.q_norm.weight", m.head_dim, WeightShard::kReplicated, WeightRole::kNorm));
    w.push_back(vector("self_attn.k_norm.weight", m.head_dim, WeightShard::kReplicated, WeightRole::kNorm));
  }
}

void add_dense_mlp(const ModelSpec& m, std::vector<WeightTensor>& w) {
  const std::int64_t i = m.intermediate_size;
  w.push_back(linear("mlp.gate_proj.weight", i, m.hidden_size, WeightShard::kDenseTpRows, WeightRole::kDenseMlp));
  w.push_back(linear("mlp.up_proj.weight", i, m.hidden_size, WeightShard::kDenseTpRows, WeightRole::kDenseMlp));
  w.push_back(linear("mlp.down_proj.weight", m.hidden_size, i, WeightShard::kDenseTpCols, WeightRole::kDenseMlp));
}

void add_moe(const ModelSpec& m, std::vector<WeightTensor>& w) {
  const MoeSpec& e = *m.moe;
  const bool mixtral = m.architecture == Architecture::kMixtral;
  const std::string prefix = mixtral ? "block_sparse_moe." : "mlp.";
  w.push_back(linear(prefix + "gate.weight", e.num_experts, m.hidden_size, WeightShard::kReplicated,
                     WeightRole::kRouter, /*quantizable=*/false));
  if (e.score_correction_bias) {
    w.push_back(
        vector(prefix + "gate.e_score_correction_bias", e.num_experts, WeightShard::kReplicated, WeightRole::kRouter));
  }
  const std::int64_t i = e.expert_intermediate_size;
  const char* gate = mixtral ? "experts.w1.weight" : "experts.gate_proj.weight";
  const char* up = mixtral ? "experts.w3.weight" : "experts.up_proj.weight";
  const char* down = mixtral ? "experts.w2.weight" : "experts.down_proj.weight";
  w.push_back(linear(prefix + gate, i, m.hidden_size, WeightShard::kExpertRows, WeightRole::kRoutedExpert, true,
                     e.num_experts));
  w.push_back(
      linear(prefix + up, i, m.hidden_size, WeightShard::kExpertRows, WeightRole::kRoutedExpert, true, e.num_experts));
  w.push_back(linear(prefix + down, m.hidden_size, i, WeightShard::kExpertCols, WeightRole::kRoutedExpert, true,
                     e.num_experts));
  if (e.num_shared_experts > 0) {
    // SGLang builds the shared experts as one MLP of width n_shared_experts × moe_intermediate_size.
    const std::int64_t s = e.num_shared_experts * i;
    w.push_back(linear("mlp.shared_experts.gate_proj.weight", s, m.hidden_size, WeightShard::kMoeTpRows,
                       WeightRole::kSharedExpert));
    w.push_back(linear("mlp.shared_experts.up_proj.weight", s, m.hidden_size, WeightShard::kMoeTpRows,
                       WeightRole::kSharedExpert));
    w.push_back(linear("mlp.shared_experts.down_proj.weight", m.hidden_size, s, WeightShard::kMoeTpCols,
                       WeightRole::kSharedExpert));
  }
}

}  // namespace

std::vector<WeightTensor> layer_weights(const ModelSpec& model, int layer) {
  PARATWIN_ASSERT(layer >= 0 && layer < model.num_layers, "layer {} outside [0, {})", layer, model.num_layers);
  std::vector<WeightTensor> w;
  w.push_back(vector("input_layernorm.weight", model.hidden_size, WeightShard::kReplicated, WeightRole::kNorm));
  if (model.mla) {
    add_mla_attention(model, w);
  } else {
    add_gqa_attention(model, w);
  }
  w.push_back(
      vector("post_attention_layernorm.weight", model.hidden_size, WeightShard::kReplicated, WeightRole::kNorm));
  if (model.is_moe_layer(layer)) {
    add_moe(model, w);
  } else {
    add_dense_mlp(model, w);
  }
  return w;
}

std::vector<WeightTensor> non_layer_weights(const ModelSpec& model) {
  std::vector<WeightTensor> w;
  // The embedding is a row gather, not a matrix product: it is not "linear".
  w.push_back(WeightTensor{"model.embed_tokens.weight", model.vocab_size, model.hidden_size, 1, false, false,
                           WeightShard::kVocabRows, WeightRole::kEmbedding});
  w.push_back(vector("model.norm.weight", model.hidden_size, WeightShard::kReplicated, WeightRole::kNorm));
  if (!model.tie_word_embeddings) {
    w.push_back(linear("lm_head.weight", model.vocab_size, model.hidden_size, WeightShard::kVocabRows,
                       WeightRole::kLmHead, /*quantizable=*/false));
  }
  return w;
}

std::string_view to_string(Architecture architecture) {
  for (const auto& [arch, name] : kArchitectures) {
    if (arch == architecture) return name;
  }
  return "unknown";
}

std::string_view to_string(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kMha:
      return "mha";
    case AttentionKind::kGqa:
      return "gqa";
    case AttentionKind::kMla:
      return "mla";
  }
  return "unknown";
}

std::string_view to_string(WeightRole role) {
  switch (role) {
    case WeightRole::kEmbedding:
      return "embedding";
    case WeightRole::kLmHead:
      return "lm_head";
    case WeightRole::kNorm:
      return "norm";
    case WeightRole::kAttention:
      return "attention";
    case WeightRole::kIndexer:
      return "indexer";
    case WeightRole::kDenseMlp:
      return "dense_mlp";
    case WeightRole::kRouter:
      return "router";
    case WeightRole::kSharedExpert:
      return "shared_expert";
    case WeightRole::kRoutedExpert:
      return "routed_expert";
  }
  return "unknown";
}

}  // namespace paratwin
