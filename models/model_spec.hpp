#pragma once
/// Model descriptions read from Hugging Face `config.json` files, the built-in model zoo, and the model's weight
/// inventory (every weight tensor of a layer with its shape and how SGLang shards it).
///
/// Supported architectures (the `architectures[0]` field): DeepseekV3ForCausalLM, DeepseekV32ForCausalLM (MLA, MoE,
/// V3.2's DSA lightning indexer), LlamaForCausalLM, Qwen3ForCausalLM (qk-norm), Qwen3MoeForCausalLM and
/// MixtralForCausalLM. Field names and defaults follow the transformers configuration classes of each family.
/// Every dimension is an element count; every size derived from them (parameters, bytes) is std::int64_t or double.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/dtype.hpp"

namespace paratwin {

/// The model family, from `architectures[0]`.
enum class Architecture : std::uint8_t { kDeepseekV3, kDeepseekV32, kLlama, kQwen3, kQwen3Moe, kMixtral };

/// How attention projects keys and values.
enum class AttentionKind : std::uint8_t {
  kMha,  ///< one KV head per query head (num_key_value_heads == num_attention_heads)
  kGqa,  ///< grouped-query attention: num_key_value_heads < num_attention_heads
  kMla,  ///< DeepSeek multi-head latent attention: one shared latent (kv_lora_rank + rope dims) per token
};

/// How the router turns gate logits into expert scores.
enum class RouterScoring : std::uint8_t { kSoftmax, kSigmoid };

/// DeepSeek multi-head latent attention (fields of the same names in config.json).
struct MlaSpec {
  std::int64_t q_lora_rank = 0;       ///< rank of the query down-projection (q_a_proj: hidden → q_lora_rank)
  std::int64_t kv_lora_rank = 0;      ///< rank of the KV latent stored in the cache (512 for V3)
  std::int64_t qk_nope_head_dim = 0;  ///< per-head query/key dims without rotary embedding
  std::int64_t qk_rope_head_dim = 0;  ///< per-head rotary dims; the key's rope part is shared by all heads
  std::int64_t v_head_dim = 0;        ///< per-head value dims
  /// Query/key dims per head: qk_nope_head_dim + qk_rope_head_dim (192 for V3).
  [[nodiscard]] std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  /// Elements of one token's cached latent: kv_lora_rank + qk_rope_head_dim (576 for V3).
  [[nodiscard]] std::int64_t latent_dim() const { return kv_lora_rank + qk_rope_head_dim; }
  friend bool operator==(const MlaSpec&, const MlaSpec&) = default;
};

/// DeepSeek-V3.2 DSA lightning indexer (index_n_heads, index_head_dim, index_topk in config.json). Its query comes from
/// the q_lora latent (wq_b: q_lora_rank → heads·head_dim), its key from the hidden state (wk: hidden → head_dim,
/// LayerNorm), its per-head weights from the hidden state (weights_proj: hidden → heads).
struct DsaIndexerSpec {
  std::int64_t heads = 0;     ///< index_n_heads (64)
  std::int64_t head_dim = 0;  ///< index_head_dim (128; its first qk_rope_head_dim dims carry RoPE)
  std::int64_t topk = 0;      ///< index_topk: keys each query attends to (2048)
  friend bool operator==(const DsaIndexerSpec&, const DsaIndexerSpec&) = default;
};

/// Mixture-of-experts feed-forward layers. Which layers are MoE combines the DeepSeek and Qwen3 rules (see
/// ModelSpec::is_moe_layer); Mixtral makes every layer MoE.
struct MoeSpec {
  std::int64_t num_experts = 0;               ///< routed experts (n_routed_experts / num_experts / num_local_experts)
  std::int64_t experts_per_token = 0;         ///< num_experts_per_tok (top-k)
  std::int64_t expert_intermediate_size = 0;  ///< moe_intermediate_size (Mixtral: intermediate_size)
  std::int64_t num_shared_experts = 0;        ///< n_shared_experts (DeepSeek), each of expert_intermediate_size
  int first_k_dense_replace = 0;              ///< DeepSeek: layers [0, k) are dense
  int moe_layer_freq = 1;                     ///< DeepSeek: MoE only where layer % moe_layer_freq == 0
  int decoder_sparse_step = 1;                ///< Qwen3: MoE only where (layer + 1) % decoder_sparse_step == 0
  std::vector<int> mlp_only_layers;           ///< Qwen3: layers that stay dense
  std::int64_t n_group = 1;                   ///< DeepSeek group-limited routing: expert groups
  std::int64_t topk_group = 1;                ///< DeepSeek: groups a token may route to
  RouterScoring scoring = RouterScoring::kSoftmax;  ///< scoring_func (DeepSeek V3: sigmoid)
  double routed_scaling_factor = 1.0;               ///< DeepSeek: scale of the routed experts' sum
  bool norm_topk_prob = false;                      ///< renormalise the top-k weights
  bool score_correction_bias = false;               ///< DeepSeek topk_method "noaux_tc": a per-expert fp32 bias vector
  friend bool operator==(const MoeSpec&, const MoeSpec&) = default;
};

/// A model, as far as paratwin needs it: dimensions, attention and MoE structure, weight types.
struct ModelSpec {
  std::string name;               ///< zoo name, or the file's stem (the directory's name for `<dir>/config.json`)
  std::string architecture_name;  ///< architectures[0] as written in the file
  Architecture architecture = Architecture::kLlama;

  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  int num_layers = 0;                  ///< num_hidden_layers (MTP/next-n layers excluded)
  std::int64_t intermediate_size = 0;  ///< dense FFN width (DeepSeek's first dense layers, Qwen3's mlp_only_layers)
  std::int64_t num_attention_heads = 0;
  std::int64_t num_kv_heads = 0;  ///< num_key_value_heads; for MLA the file's value, not used
  std::int64_t head_dim = 0;      ///< MHA/GQA head dim (head_dim field, else hidden / heads); MLA: 0
  AttentionKind attention_kind = AttentionKind::kGqa;
  bool attention_bias = false;       ///< q/k/v/o projections carry biases
  bool qk_norm = false;              ///< Qwen3: RMSNorm over each query and key head
  bool tie_word_embeddings = false;  ///< lm_head shares the embedding table
  std::int64_t max_position_embeddings = 0;
  /// RoPE base frequency (rope_theta; Hugging Face's default 10000 when absent). rope_scaling is not read: it changes
  /// the angles of long positions, not the cost of any op.
  double rope_theta = 10000.0;
  int num_nextn_predict_layers = 0;  ///< DeepSeek MTP layers (not part of num_layers, not counted anywhere)

  std::optional<MlaSpec> mla;             ///< set iff attention_kind == kMla
  std::optional<DsaIndexerSpec> indexer;  ///< DeepSeek-V3.2 only
  std::optional<MoeSpec> moe;             ///< MoE models only

  /// Type of the parameters that are never quantized (embeddings, lm_head, norms, router, biases): torch_dtype
  /// (bfloat16 and float16 → kBf16, float32 → kFp32).
  DType param_dtype = DType::kBf16;
  /// Type of the quantizable linear weights: kFp8 for quantization_config.quant_method "fp8" or a user override,
  /// else param_dtype.
  DType weight_dtype = DType::kBf16;
  /// FP8 block-scale tile (quantization_config.weight_block_size, [rows, cols]); one fp32 scale per tile. {0, 0}
  /// means one scale per tensor.
  std::int64_t fp8_block_rows = 128, fp8_block_cols = 128;

  /// Whether layer `layer` (0-based) has an MoE feed-forward (false for dense models and out-of-range layers).
  /// Rule: moe is set, layer ≥ first_k_dense_replace, layer % moe_layer_freq == 0, (layer + 1) % decoder_sparse_step
  /// == 0 and layer ∉ mlp_only_layers (the DeepSeek rule and the Qwen3 rule; each family leaves the other's
  /// fields at their neutral defaults).
  [[nodiscard]] bool is_moe_layer(int layer) const;
  /// Number of MoE layers among [0, num_layers).
  [[nodiscard]] int num_moe_layers() const;
  /// Query/key dims per head the attention kernel sees (MLA: qk_nope + qk_rope, else head_dim).
  [[nodiscard]] std::int64_t qk_head_dim() const;
  /// Value dims per head (MLA: v_head_dim, else head_dim).
  [[nodiscard]] std::int64_t v_head_dim() const;

  friend bool operator==(const ModelSpec&, const ModelSpec&) = default;
};

/// Parses a Hugging Face config.json. `source` names the file in error messages (a path, or "model zoo
/// 'deepseek-v3.2'"). `weight_dtype` (bf16 or fp8) overrides the file's quantization_config.
/// Throws paratwin::Error naming the source, the field and the rule on malformed JSON, an unsupported
/// architecture or quantization method, a missing or wrongly typed field, a non-positive dimension or an
/// inconsistent combination.
[[nodiscard]] ModelSpec parse_model_config(std::string_view json_text, std::string_view source,
                                           std::optional<DType> weight_dtype = std::nullopt);

/// Loads a model by zoo name (see model_zoo_names()), else from a config.json path, else from `<dir>/config.json`.
[[nodiscard]] ModelSpec load_model(std::string_view name_or_path, std::optional<DType> weight_dtype = std::nullopt);

/// Names of the built-in models, sorted.
[[nodiscard]] std::vector<std::string> model_zoo_names();

/// The config.json text of a built-in model; throws paratwin::Error listing the zoo for an unknown name.
[[nodiscard]] std::string_view model_zoo_config(std::string_view name);

// ---------------------------------------------------------------------------------------------------------------
// Weight inventory
// ---------------------------------------------------------------------------------------------------------------

/// What a weight tensor belongs to (for breakdowns).
enum class WeightRole : std::uint8_t {
  kEmbedding,     ///< input embedding table
  kLmHead,        ///< output projection (absent when tied)
  kNorm,          ///< RMSNorm/LayerNorm weights and biases
  kAttention,     ///< attention projections (MLA or q/k/v/o) and their biases
  kIndexer,       ///< DSA lightning indexer projections
  kDenseMlp,      ///< dense FFN (gate, up, down)
  kRouter,        ///< MoE gate and its score-correction bias
  kSharedExpert,  ///< DeepSeek shared experts
  kRoutedExpert,  ///< routed experts (count = num_experts)
};

/// How SGLang places a tensor on the ranks of one pipeline stage (what each rank holds). "Rows" are output features
/// (column-parallel linear), "cols" input features (row-parallel linear).
enum class WeightShard : std::uint8_t {
  kReplicated,    ///< every rank holds all of it
  kAttnTpRows,    ///< output features split over attention TP (q_b_proj, kv_b_proj, q_proj)
  kAttnTpCols,    ///< input features split over attention TP (o_proj)
  kAttnTpKvRows,  ///< k_proj/v_proj: KV heads split over attention TP; one head replicated when attn_tp > kv heads
  kDenseTpRows,   ///< dense FFN gate/up over the dense-FFN TP size
  kDenseTpCols,   ///< dense FFN down over the dense-FFN TP size
  kMoeTpRows,     ///< shared-expert gate/up over moe_tp
  kMoeTpCols,     ///< shared-expert down over moe_tp
  kExpertRows,    ///< routed experts over ep, each expert's gate/up rows over moe_tp
  kExpertCols,    ///< routed experts over ep, each expert's down cols over moe_tp
  kVocabRows,     ///< vocab-parallel over the stage's tp ranks (embedding: replicated under DP attention)
};

/// One weight tensor of a layer (or of the model outside layers), with `count` identical copies (experts).
struct WeightTensor {
  std::string name;          ///< Hugging Face name inside the layer, e.g. "self_attn.q_b_proj.weight"
  std::int64_t rows = 0;     ///< output features (vector: its length)
  std::int64_t cols = 0;     ///< input features (vector: 1)
  std::int64_t count = 1;    ///< copies (routed experts: num_experts)
  bool quantizable = false;  ///< a linear weight stored in ModelSpec::weight_dtype (else param_dtype)
  bool linear = false;       ///< a matrix a token multiplies through (counts for linear FLOPs)
  WeightShard shard = WeightShard::kReplicated;
  WeightRole role = WeightRole::kNorm;
  /// Parameters: rows × cols × count.
  [[nodiscard]] std::int64_t params() const { return rows * cols * count; }
};

/// The tensors of decoder layer `layer` (attention, norms, dense FFN or MoE), matching the checkpoint's tensors
/// (for DeepSeek-V3.2 the tensor list of the published checkpoint, scales excluded).
[[nodiscard]] std::vector<WeightTensor> layer_weights(const ModelSpec& model, int layer);
/// The tensors outside decoder layers: embedding, final norm, lm_head (unless tied).
[[nodiscard]] std::vector<WeightTensor> non_layer_weights(const ModelSpec& model);

[[nodiscard]] std::string_view to_string(Architecture architecture);
[[nodiscard]] std::string_view to_string(AttentionKind kind);
[[nodiscard]] std::string_view to_string(WeightRole role);

}  // namespace paratwin
