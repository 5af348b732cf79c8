#pragma once
// Small helpers shared by the models tests: config.json texts and string surgery on them.

#include <stdexcept>
#include <string>

namespace paratwin::test {

/// DeepSeek-V3's Hugging Face config.json (deepseek-ai/DeepSeek-V3, the fields the architecture reads; the V3.2 file
/// in models/zoo/ adds the indexer fields and scale_fmt).
inline const char* const kDeepseekV3Config = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]},
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "v_head_dim": 128,
  "vocab_size": 129280
})";

/// A tiny Llama config for error tests: every field the parser reads.
inline const char* const kTinyLlama = R"({
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64,
  "intermediate_size": 128,
  "num_attention_heads": 8,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 1000
})";

/// A tiny Qwen3-MoE config for error tests.
inline const char* const kTinyQwenMoe = R"({
  "architectures": ["Qwen3MoeForCausalLM"],
  "decoder_sparse_step": 1,
  "head_dim": 16,
  "hidden_size": 64,
  "intermediate_size": 128,
  "mlp_only_layers": [],
  "moe_intermediate_size": 32,
  "num_attention_heads": 4,
  "num_experts": 8,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 4,
  "num_key_value_heads": 2,
  "vocab_size": 1000
})";

/// `text` with the first occurrence of `from` replaced by `to`; throws if `from` is absent (a test bug).
inline std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("test config lacks '" + from + "'");
  return text.replace(at, from.size(), to);
}

}  // namespace paratwin::test
