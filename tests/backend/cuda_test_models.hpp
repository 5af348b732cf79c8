#pragma once
// Tiny model configs for the CUDA backend's tests (CPU plan tests and GPU runs).

#include <string>

#include "models/model_spec.hpp"
#include "models/schedule_builder.hpp"
#include "tests/topology/layout_test_util.hpp"

namespace paratwin::test {

/// Llama-like: hidden 256, 4 heads, 2 KV heads (head_dim 64), FFN 512, 2 layers.
inline const char* const kCudaTinyLlama = R"({
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 256,
  "intermediate_size": 512,
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 1024
})";

/// Qwen3-MoE-like: 8 experts, top-2, expert width 128, 2 layers.
inline const char* const kCudaTinyQwenMoe = R"({
  "architectures": ["Qwen3MoeForCausalLM"],
  "decoder_sparse_step": 1,
  "head_dim": 64,
  "hidden_size": 256,
  "intermediate_size": 512,
  "mlp_only_layers": [],
  "moe_intermediate_size": 128,
  "norm_topk_prob": true,
  "num_attention_heads": 4,
  "num_experts": 8,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "torch_dtype": "bfloat16",
  "vocab_size": 1024
})";

/// DeepSeek-V3-like with fp8 weights in 128×128 blocks (MLA, one dense and one MoE layer with a shared expert): every
/// fp8 GEMM's k is a multiple of 128 and some widths are not (qkv_a_proj: 416).
inline const char* const kCudaTinyDeepseekFp8 = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "first_k_dense_replace": 1,
  "hidden_act": "silu",
  "hidden_size": 256,
  "intermediate_size": 512,
  "kv_lora_rank": 128,
  "max_position_embeddings": 4096,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 128,
  "moe_layer_freq": 1,
  "n_group": 1,
  "n_routed_experts": 8,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 4,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 2,
  "num_key_value_heads": 4,
  "num_nextn_predict_layers": 0,
  "q_lora_rank": 256,
  "qk_nope_head_dim": 64,
  "qk_rope_head_dim": 32,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]},
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "tie_word_embeddings": false,
  "topk_group": 1,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "v_head_dim": 64,
  "vocab_size": 1024
})";

inline ModelSpec tiny_llama() {
  return parse_model_config(kCudaTinyLlama, "tiny-llama");
}
inline ModelSpec tiny_qwen_moe() {
  return parse_model_config(kCudaTinyQwenMoe, "tiny-qwen3-moe");
}

inline ModelSpec tiny_deepseek_fp8() {
  return parse_model_config(kCudaTinyDeepseekFp8, "tiny-deepseek-v3-fp8");
}

inline ParallelConfig parallel(int tp, int attn_cp = 1, int pp = 1, int ep = 1) {
  return make_config(tp, pp, 1, false, attn_cp, ep);
}

inline ScheduleOptions prefill(std::int64_t tokens, CpSplit split = CpSplit::kRoundRobin) {
  ScheduleOptions o;
  o.prompt_tokens = tokens;
  o.cp_split = split;
  return o;
}

// Per-token routing: each token's experts a seeded hash of its (request, position), so the schedule's dispatch sizes
// and the tensors the run routes agree on every layout (and with the one-GPU reference).
inline ScheduleOptions per_token_routing(std::int64_t tokens) {
  auto o = prefill(tokens);
  o.routing.load = RoutingLoad::kPerToken;
  o.routing.seed = 7;
  return o;
}

}  // namespace paratwin::test
