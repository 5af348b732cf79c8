#pragma once
/// Memory per GPU of an SGLang deployment: weights, KV cache, activation peak, and whether it fits.
///
/// Placement rules (SGLang at PR #17213; docs/models.md has the formulas and a worked example):
/// - Attention weights are sharded over attention TP (heads split; MLA's q_a/kv_a projections and the DSA indexer
///   are replicated) and therefore replicated on every attention-CP and attention-DP rank.
/// - Dense FFN layers are sharded over the stage's tp ranks (SGLang's default; `--moe-dense-tp-size 1` replicates
///   them: MemoryRequest::dense_tp_size).
/// - Routed experts are split over ep (num_experts / ep per rank) and each expert's matrices over moe_tp; shared
///   experts over moe_tp (replicated across EP, as SGLang does with DeepEP); router gates are replicated.
/// - The embedding is vocab-parallel over the stage's tp ranks, but replicated under DP attention (SGLang's
///   VocabParallelEmbedding(enable_tp = not dp_attention)); lm_head is vocab-parallel over tp. Both pad the vocab
///   to a multiple of 64.
/// - Layers split over pp stages as SGLang's get_pp_indices: equal parts, the remainder added from the
///   second-to-last stage backwards; the first stage holds the embedding, the last the final norm and lm_head.
/// - KV cache: MLA stores one latent row per token and layer on every attention-TP rank (not sharded); MHA/GQA
///   stores 2 × (kv heads on this rank) × head_dim, the kv heads split over attention TP and replicated when
///   attn_tp > kv heads. Under SGLang's all-gather CP every CP rank holds the full-sequence KV.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/model_spec.hpp"
#include "models/schedule.hpp"
#include "models/schedule_options.hpp"
#include "topology/parallel_config.hpp"

namespace paratwin {

/// One pipeline stage's layers: [first, end).
struct LayerRange {
  int first = 0;
  int end = 0;
  [[nodiscard]] int size() const { return end - first; }
  friend bool operator==(const LayerRange&, const LayerRange&) = default;
};

/// SGLang's layer split over pipeline stages (get_pp_indices without SGLANG_PP_LAYER_PARTITION): each stage gets
/// num_layers / pp_size layers and the remainder goes one each to stages pp−2, pp−3, … (61 layers, pp 4:
/// 15, 15, 16, 15). Throws paratwin::Error when pp_size < 1 or pp_size > num_layers.
[[nodiscard]] std::vector<LayerRange> pp_layer_ranges(int num_layers, int pp_size);

/// KV-cache bytes one token adds per layer on one rank. MLA: the latent row (kv_lora_rank + rope dims): bf16 1,152 B
/// for V3; fp8: 656 B (FlashMLA layout) for DSA models, 576 B (plain fp8 elements) otherwise; plus, for DSA, the
/// indexer key in fp8 with one fp32 scale per 128 dims (132 B). MHA/GQA: 2 × kv_heads_per_rank × head_dim × bytes.
/// `kv_dtype` is bf16, fp8 or fp32; throws paratwin::Error otherwise or when the KV heads do not split over attn_tp.
[[nodiscard]] double kv_bytes_per_token_per_layer(const ModelSpec& model, const ParallelConfig& config, DType kv_dtype);

/// What to estimate.
struct MemoryRequest {
  Phase phase = Phase::kPrefill;
  /// KV tokens per request held by the DP group (prefill: the prompt; decode: the context so far).
  std::int64_t context_tokens = 0;
  /// Requests whose KV is resident on the DP group (every rank of the group holds each request's KV).
  int batch = 1;
  /// Tokens of one forward pass of the DP group, all CP ranks together (a prefill chunk, or the decode batch).
  /// 0: batch × context_tokens for prefill, batch for decode.
  std::int64_t forward_tokens = 0;
  double gpu_memory_bytes = 0;              ///< HBM of one GPU
  double mem_fraction_static = 0.88;        ///< SGLang --mem-fraction-static: share for weights + KV pool
  DType kv_dtype = DType::kBf16;            ///< --kv-cache-dtype: bf16 or fp8 (fp8_e4m3)
  CpSplit cp_split = CpSplit::kRoundRobin;  ///< --nsa-prefill-cp-mode: round-robin-split or in-seq-split (zigzag)
  MoeMode moe_mode = MoeMode::kGather;      ///< kGather: tokens all-gathered for TP/EP-sharded fused MoE; kAllToAll:
                                            ///< DeepEP dispatch/combine, tokens stay scattered
  int dense_tp_size = 0;                    ///< TP of dense FFN layers: 0 = tp_size (SGLang default), 1 = replicated
  int pp_stage = -1;                        ///< stage to estimate; -1 = the stage needing the most memory
};

/// The memory request matching a schedule built with `options` under `config`: the same tokens per DP group (one
/// micro-batch chunk of every request of the group in prefill), batch per attention-DP replica and MoE mode, dense
/// FFN sharded as the builder shards it (over attention TP). `mem_fraction_static` must lie in (0, 1) (throws
/// paratwin::Error naming --mem-fraction-static otherwise).
[[nodiscard]] MemoryRequest memory_request_for(const ScheduleOptions& options, const ParallelConfig& config,
                                               MoeMode moe_mode, double gpu_memory_bytes, double mem_fraction_static,
                                               DType kv_dtype);

/// Per-rank weight bytes by role (FP8 block scales included with their tensors).
struct WeightBytes {
  double embedding = 0, lm_head = 0, norms = 0, attention = 0, indexer = 0, dense_mlp = 0, router = 0,
         shared_experts = 0, routed_experts = 0;
  [[nodiscard]] double total() const {
    return embedding + lm_head + norms + attention + indexer + dense_mlp + router + shared_experts + routed_experts;
  }
};

/// Memory of one rank of one pipeline stage.
///
/// Fit rule (SGLang's --mem-fraction-static): the static pool, mem_fraction_static × capacity, must hold the
/// weights and the KV cache of the resident requests; the rest of the GPU, (1 − fraction) × capacity, must hold the
/// activation peak (SGLang keeps it for activations, CUDA graphs and NCCL buffers). fits = both hold.
struct MemoryEstimate {
  int pp_stage = 0;
  LayerRange layers;                  ///< this stage's layers
  WeightBytes weights;                ///< by role
  double weights_bytes = 0;           ///< weights.total()
  double kv_bytes_per_token = 0;      ///< KV bytes one token adds on this rank (all layers of the stage)
  double kv_cache_bytes = 0;          ///< batch × context_tokens × kv_bytes_per_token
  double activation_peak_bytes = 0;   ///< residual stream + the largest op's live buffers
  std::string activation_peak_op;     ///< the op that sets the peak, e.g. "attn.indexer_logits"
  std::int64_t attention_tokens = 0;  ///< query tokens per rank in attention (forward_tokens / attn_cp in prefill)
  std::int64_t ffn_tokens = 0;        ///< tokens per rank entering the MoE / dense FFN
  double total_bytes = 0;             ///< weights + KV + activation peak
  double capacity_bytes = 0;          ///< gpu_memory_bytes
  double static_budget_bytes = 0;     ///< mem_fraction_static × capacity
  double dynamic_budget_bytes = 0;    ///< capacity − static budget
  /// Tokens of KV the static pool holds next to the weights (SGLang's max_total_num_tokens); 0 if none.
  std::int64_t kv_pool_tokens = 0;
  bool fits = false;
  std::string verdict;  ///< one sentence: fits, or which budget is exceeded and by how much
};

/// Estimates the memory of one rank. Validates `config` (validate_structure) and that the model splits over it
/// (heads over attn_tp, KV heads, FFN widths over their TP sizes, experts over ep); throws paratwin::Error naming
/// the field, the flag and the rule.
[[nodiscard]] MemoryEstimate estimate_memory(const ModelSpec& model, const ParallelConfig& config,
                                             const MemoryRequest& request);

/// The estimate of every pipeline stage (request.pp_stage is ignored).
[[nodiscard]] std::vector<MemoryEstimate> estimate_memory_per_stage(const ModelSpec& model,
                                                                    const ParallelConfig& config,
                                                                    const MemoryRequest& request);

/// Bytes one rank holds of tensor `tensor` of `model` under `config` (dense FFN TP `dense_tp_size`, 0 = tp).
[[nodiscard]] double weight_bytes_per_rank(const ModelSpec& model, const ParallelConfig& config,
                                           const WeightTensor& tensor, int dense_tp_size = 0);

}  // namespace paratwin
