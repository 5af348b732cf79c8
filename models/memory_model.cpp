#include "models/memory_model.hpp"

#include <algorithm>
#include <cmath>

#include "models/op_costs.hpp"
#include "topology/error.hpp"

namespace paratwin {

namespace {

constexpr std::int64_t kVocabPadding = 64;  // SGLang's DEFAULT_VOCAB_PADDING_SIZE
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}
double d(std::int64_t v) {
  return static_cast<double>(v);
}

/// The parallel degrees that shard weights, checked against the model.
struct Degrees {
  int tp = 1;  ///< ranks per stage
  int attn_tp = 1;
  int attn_cp = 1;
  int attn_dp = 1;
  int dense_tp = 1;  ///< dense FFN TP
  int moe_tp = 1;
  int moe_dp = 1;
  int ep = 1;
  bool dp_attention = false;
};

Degrees resolve_degrees(const ModelSpec& m, const ParallelConfig& c, int dense_tp_size) {
  validate_structure(c);
  Degrees g;
  g.tp = c.tp_size;
  g.attn_tp = c.attn_tp_size();
  g.attn_cp = c.attn_cp_size;
  g.attn_dp = c.attn_dp_size();
  g.moe_tp = c.moe_tp_size();
  g.moe_dp = c.moe_dp_size;
  g.ep = c.ep_size;
  g.dp_attention = c.enable_dp_attention;
  g.dense_tp = dense_tp_size == 0 ? c.tp_size : dense_tp_size;
  if (g.dense_tp < 1 || c.tp_size % g.dense_tp != 0) {
    fail("dense FFN TP size {} (--moe-dense-tp-size) must divide --tp-size {}", dense_tp_size, c.tp_size);
  }
  const std::string attn_tp_text =
      fmt::format("the attention TP size {} (--tp-size {} / (attn_dp {} × --attn-cp-size {}))", g.attn_tp, c.tp_size,
                  g.attn_dp, c.attn_cp_size);
  if (m.num_attention_heads % g.attn_tp != 0) {
    fail("model {}: num_attention_heads {} is not divisible by {}: SGLang splits query heads evenly", m.name,
         m.num_attention_heads, attn_tp_text);
  }
  if (!m.mla && m.num_kv_heads % g.attn_tp != 0 && g.attn_tp % m.num_kv_heads != 0) {
    fail(
        "model {}: num_key_value_heads {} and {} must divide one another: KV heads are split, or replicated when "
        "attn_tp exceeds them",
        m.name, m.num_kv_heads, attn_tp_text);
  }
  if (m.intermediate_size % g.dense_tp != 0) {
    fail("model {}: intermediate_size {} is not divisible by the dense FFN TP size {}", m.name, m.intermediate_size,
         g.dense_tp);
  }
  if (m.moe) {
    if (m.moe->num_experts % g.ep != 0) {
      fail("model {}: {} routed experts do not split evenly over --ep-size {}", m.name, m.moe->num_experts, g.ep);
    }
    const std::string moe_tp_text = fmt::format("the MoE TP size {} (--tp-size {} / (--moe-dp-size {} × --ep-size {}))",
                                                g.moe_tp, c.tp_size, c.moe_dp_size, c.ep_size);
    if (m.moe->expert_intermediate_size % g.moe_tp != 0) {
      fail("model {}: moe_intermediate_size {} is not divisible by {}", m.name, m.moe->expert_intermediate_size,
           moe_tp_text);
    }
  }
  return g;
}

/// KV heads on one rank: split over attention TP, one replicated head when attn_tp exceeds them.
std::int64_t kv_heads_per_rank(const ModelSpec& m, int attn_tp) {
  return attn_tp >= m.num_kv_heads ? 1 : m.num_kv_heads / attn_tp;
}

double tensor_bytes_per_rank(const ModelSpec& m, const Degrees& g, const WeightTensor& w) {
  std::int64_t rows = w.rows, cols = w.cols, count = w.count;
  switch (w.shard) {
    case WeightShard::kReplicated:
      break;
    case WeightShard::kAttnTpRows:
      rows /= g.attn_tp;
      break;
    case WeightShard::kAttnTpCols:
      cols /= g.attn_tp;
      break;
    case WeightShard::kAttnTpKvRows:
      rows = rows / m.num_kv_heads * kv_heads_per_rank(m, g.attn_tp);
      break;
    case WeightShard::kDenseTpRows:
      rows /= g.dense_tp;
      break;
    case WeightShard::kDenseTpCols:
      cols /= g.dense_tp;
      break;
    case WeightShard::kMoeTpRows:
      rows /= g.moe_tp;
      break;
    case WeightShard::kMoeTpCols:
      cols /= g.moe_tp;
      break;
    case WeightShard::kExpertRows:
      count /= g.ep;
      rows /= g.moe_tp;
      break;
    case WeightShard::kExpertCols:
      count /= g.ep;
      cols /= g.moe_tp;
      break;
    case WeightShard::kVocabRows: {
      const std::int64_t padded = ceil_div(rows, kVocabPadding) * kVocabPadding;
      const bool replicated = w.role == WeightRole::kEmbedding && g.dp_attention;
      rows = replicated ? padded : ceil_div(padded, g.tp);
      break;
    }
  }
  const DType dtype = w.quantizable ? m.weight_dtype : m.param_dtype;
  double bytes = d(rows * cols * count) * dtype_bytes(dtype);
  if (dtype == DType::kFp8) {
    const std::int64_t tiles = m.fp8_block_rows > 0
                                   ? ceil_div(rows, m.fp8_block_rows) * ceil_div(cols, m.fp8_block_cols)
                                   : 1;  // one per-tensor scale
    bytes += d(tiles * count) * 4;
  }
  return bytes;
}

void add_to(WeightBytes& b, WeightRole role, double bytes) {
  switch (role) {
    case WeightRole::kEmbedding:
      b.embedding += bytes;
      break;
    case WeightRole::kLmHead:
      b.lm_head += bytes;
      break;
    case WeightRole::kNorm:
      b.norms += bytes;
      break;
    case WeightRole::kAttention:
      b.attention += bytes;
      break;
    case WeightRole::kIndexer:
      b.indexer += bytes;
      break;
    case WeightRole::kDenseMlp:
      b.dense_mlp += bytes;
      break;
    case WeightRole::kRouter:
      b.router += bytes;
      break;
    case WeightRole::kSharedExpert:
      b.shared_experts += bytes;
      break;
    case WeightRole::kRoutedExpert:
      b.routed_experts += bytes;
      break;
  }
}

struct Peak {
  double bytes = 0;
  std::string op;
  void offer(std::string name, double candidate) {
    if (candidate > bytes) {
      bytes = candidate;
      op = std::move(name);
    }
  }
};

std::string gib(double bytes) {
  return fmt::format("{:.2f} GiB", bytes / kGiB);
}

void check_request(const ParallelConfig& c, const MemoryRequest& r) {
  if (!(r.gpu_memory_bytes > 0)) fail("memory request: gpu_memory_bytes must be positive, got {}", r.gpu_memory_bytes);
  if (!(r.mem_fraction_static > 0 && r.mem_fraction_static <= 1)) {
    fail("memory request: mem_fraction_static (--mem-fraction-static) must be in (0, 1], got {}",
         r.mem_fraction_static);
  }
  if (r.context_tokens < 0) fail("memory request: context_tokens must be ≥ 0, got {}", r.context_tokens);
  if (r.batch < 1) fail("memory request: batch must be ≥ 1, got {}", r.batch);
  if (r.forward_tokens < 0) fail("memory request: forward_tokens must be ≥ 0, got {}", r.forward_tokens);
  if (r.pp_stage < -1 || r.pp_stage >= c.pp_size) {
    fail("memory request: pp_stage {} is outside [0, --pp-size {}) (or -1 for the largest stage)", r.pp_stage,
         c.pp_size);
  }
}

MemoryEstimate estimate_stage(const ModelSpec& m, const ParallelConfig& c, const MemoryRequest& r, const Degrees& g,
                              int stage, LayerRange range) {
  MemoryEstimate e;
  e.pp_stage = stage;
  e.layers = range;
  const bool first = stage == 0;
  const bool last = stage == c.pp_size - 1;

  // Weights.
  bool has_moe = false, has_dense = false;
  for (int layer = range.first; layer < range.end; ++layer) {
    (m.is_moe_layer(layer) ? has_moe : has_dense) = true;
    for (const WeightTensor& w : layer_weights(m, layer)) add_to(e.weights, w.role, tensor_bytes_per_rank(m, g, w));
  }
  for (const WeightTensor& w : non_layer_weights(m)) {
    const bool here = w.role == WeightRole::kEmbedding ? first : last;
    if (here) add_to(e.weights, w.role, tensor_bytes_per_rank(m, g, w));
  }
  if (m.tie_word_embeddings && last && !first) {
    // The last stage needs its own copy of the tied table as the output projection.
    WeightTensor head{"lm_head.weight",        m.vocab_size,       m.hidden_size, 1, false, true,
                      WeightShard::kVocabRows, WeightRole::kLmHead};
    add_to(e.weights, WeightRole::kLmHead, tensor_bytes_per_rank(m, g, head));
  }
  e.weights_bytes = e.weights.total();

  // KV cache: full sequence on every CP rank.
  e.kv_bytes_per_token = kv_bytes_per_token_per_layer(m, c, r.kv_dtype) * range.size();
  e.kv_cache_bytes = d(r.batch) * d(r.context_tokens) * e.kv_bytes_per_token;

  // Activations: the residual stream plus the largest op's live buffers.
  const bool prefill = r.phase == Phase::kPrefill;
  const std::int64_t forward =
      r.forward_tokens > 0 ? r.forward_tokens : (prefill ? r.batch * r.context_tokens : r.batch);
  const std::int64_t t = prefill ? ceil_div(forward, g.attn_cp) : forward;  // decode is not split over CP
  const std::int64_t kv_cols = prefill ? r.batch * r.context_tokens : r.context_tokens;
  // Tokens a TP group of `width` ranks all-gathers: one shard per attention group it spans (attention groups are
  // attn_tp consecutive ranks; in decode the CP ranks of a DP group hold the same tokens).
  const auto gathered = [&](int width) {
    const int span = prefill ? width / g.attn_tp : width / (g.attn_tp * g.attn_cp);
    return t * std::max(1, span);
  };
  const double a = dtype_bytes(m.param_dtype);
  const std::int64_t h = m.hidden_size;
  const double residual = 2 * d(t * h) * a;  // the layer's input and the residual stream stay live
  const double dynamic_budget = r.gpu_memory_bytes * (1 - r.mem_fraction_static);
  const std::int64_t heads = m.num_attention_heads / g.attn_tp;
  const std::int64_t qk = m.qk_head_dim();
  const std::int64_t v = m.v_head_dim();
  Peak peak;
  if (m.mla) {
    const MlaSpec& x = *m.mla;
    peak.offer("attn.qkv_proj", d(t * h) * a + d(t * (x.q_lora_rank + heads * qk + x.latent_dim())) * a);
    if (m.indexer || !prefill) {
      // Absorbed MLA (sparse prefill, decode): queries in latent space, latent output, up-projected output.
      peak.offer("attn.core", d(t * heads * (x.latent_dim() + x.kv_lora_rank + v)) * a);
    } else {
      // Prefill MHA path: kv_b_proj expands the whole prefix to per-head keys and values.
      peak.offer("attn.core", d((t + kv_cols) * heads * (qk + v)) * a);
    }
    if (m.indexer) {
      const DsaIndexerSpec& ix = *m.indexer;
      // DeepGEMM's fp8_mqa_logits writes a full [queries × keys] fp32 matrix. Keys: prefill concatenates the
      // requests' prefixes; zigzag CP concatenates the causal prefixes of the rank's two blocks, (2cp+1)/(2cp) of
      // the sequence; decode uses the paged [batch × context] form.
      std::int64_t cols = kv_cols;
      if (prefill && g.attn_cp > 1 && r.cp_split == CpSplit::kZigzag) {
        cols = r.batch * ceil_div(r.context_tokens * (2 * g.attn_cp + 1), 2 * g.attn_cp);
      }
      std::int64_t rows = t;
      const double row_bytes = d(cols) * 4;
      std::string name = "attn.indexer_logits";
      if (prefill && g.attn_cp == 1 && d(rows) * d(cols) >= 8e6) {
        // SGLang's non-CP path (_should_chunk_mqa_logits) chunks the rows when the logits exceed half the free
        // memory or 30% of the GPU, each chunk taking half the free memory; the CP path never chunks.
        const double free = dynamic_budget - residual;
        const double logits = d(rows) * row_bytes;
        if (2 * logits > free || logits > 0.3 * r.gpu_memory_bytes) {
          rows = std::clamp(static_cast<std::int64_t>(std::floor(0.5 * std::max(free, 0.0) / row_bytes)),
                            std::int64_t{1}, rows);
          name += " (chunked)";
        }
      }
      peak.offer(name, d(t * ix.heads * ix.head_dim) + d(t * ix.heads) * 4 + d(rows) * row_bytes + d(t * ix.topk) * 4);
    }
  } else {
    const std::int64_t kv_heads = kv_heads_per_rank(m, g.attn_tp);
    peak.offer("attn.qkv_proj", d(t * h) * a + d(t * (heads + 2 * kv_heads) * m.head_dim) * a);
    peak.offer("attn.core", d(t * heads * (qk + v)) * a);
  }
  peak.offer("attn.o_proj", d(t * heads * v) * a + d(t * h) * a);
  if (has_dense) {
    const std::int64_t td = gathered(g.dense_tp);
    const std::int64_t width = m.intermediate_size / g.dense_tp;
    peak.offer("mlp.dense", d(td * (2 * h + 3 * width)) * a);
    e.ffn_tokens = td;
  }
  if (has_moe) {
    const MoeSpec& x = *m.moe;
    // Gather mode all-gathers over the MoE group (moe_tp × ep = tp / moe_dp ranks); all-to-all keeps T.
    const std::int64_t tm = r.moe_mode == MoeMode::kGather ? gathered(g.tp / g.moe_dp) : t;
    // SGLang's fused_experts_impl: input and output [T × H], and per chunk of M = min(T, 64K) tokens a shared
    // cache [M·topk × max(2I', H)] (gate/up output, then the expert outputs) and [M·topk × I'] for the activation.
    const std::int64_t chunk = std::min<std::int64_t>(tm, 64 * 1024);
    const std::int64_t width = x.expert_intermediate_size / g.moe_tp;
    const std::int64_t rows = chunk * x.experts_per_token;
    peak.offer("moe.experts", d(2 * tm * h) * a + d(rows * (std::max(2 * width, h) + width)) * a);
    if (x.num_shared_experts > 0) {
      const std::int64_t shared = x.num_shared_experts * x.expert_intermediate_size / g.moe_tp;
      peak.offer("moe.shared_experts", d(tm * (2 * h + 3 * shared)) * a);
    }
    e.ffn_tokens = std::max(e.ffn_tokens, tm);
  }
  if (last) peak.offer("lm_head.logits", d(r.batch) * (d(m.vocab_size) * 4 + d(h) * a));
  e.attention_tokens = t;
  e.activation_peak_bytes = residual + peak.bytes;
  e.activation_peak_op = peak.op;

  // Verdict.
  e.capacity_bytes = r.gpu_memory_bytes;
  e.static_budget_bytes = r.mem_fraction_static * r.gpu_memory_bytes;
  e.dynamic_budget_bytes = dynamic_budget;
  e.total_bytes = e.weights_bytes + e.kv_cache_bytes + e.activation_peak_bytes;
  const double pool = e.static_budget_bytes - e.weights_bytes;
  e.kv_pool_tokens =
      pool > 0 && e.kv_bytes_per_token > 0 ? static_cast<std::int64_t>(std::floor(pool / e.kv_bytes_per_token)) : 0;
  const bool static_ok = e.weights_bytes + e.kv_cache_bytes <= e.static_budget_bytes;
  const bool dynamic_ok = e.activation_peak_bytes <= e.dynamic_budget_bytes;
  e.fits = static_ok && dynamic_ok;
  const std::string static_text =
      fmt::format("weights {} + KV {} = {} {} the static pool {} ({} × {})", gib(e.weights_bytes),
                  gib(e.kv_cache_bytes), gib(e.weights_bytes + e.kv_cache_bytes), static_ok ? "≤" : ">",
                  gib(e.static_budget_bytes), r.mem_fraction_static, gib(e.capacity_bytes));
  const std::string dynamic_text =
      fmt::format("activation peak {} ({}) {} the remaining {}", gib(e.activation_peak_bytes), e.activation_peak_op,
                  dynamic_ok ? "≤" : ">", gib(e.dynamic_budget_bytes));
  e.verdict = fmt::format("stage {}: {}: {}; {}", stage, e.fits ? "fits" : "does not fit", static_text, dynamic_text);
  return e;
}

}  // namespace

std::vector<LayerRange> pp_layer_ranges(int num_layers, int pp_size) {
  if (pp_size < 1) fail("--pp-size {} must be at least 1", pp_size);
  if (pp_size > num_layers) {
    fail("--pp-size {} exceeds the model's {} layers: every stage needs one", pp_size, num_layers);
  }
  std::vector<int> parts(static_cast<std::size_t>(pp_size), num_layers / pp_size);
  const int remaining = num_layers % pp_size;
  for (int i = 2; i < remaining + 2; ++i) ++parts[static_cast<std::size_t>(pp_size - i)];
  std::vector<LayerRange> ranges;
  int start = 0;
  for (const int part : parts) {
    ranges.push_back(LayerRange{start, start + part});
    start += part;
  }
  return ranges;
}

double kv_bytes_per_token_per_layer(const ModelSpec& m, const ParallelConfig& c, DType kv_dtype) {
  validate_structure(c);
  if (kv_dtype != DType::kBf16 && kv_dtype != DType::kFp8 && kv_dtype != DType::kFp32) {
    fail("KV-cache dtype '{}' is not supported: use bf16 or fp8", to_string(kv_dtype));
  }
  if (m.mla) {
    const MlaSpec& x = *m.mla;
    // DSA models store FP8 in FlashMLA's layout (scales + bf16 rope tail); plain MLA stores fp8 elements.
    double bytes = m.indexer ? d(mla_latent_row_bytes(x.latent_dim(), x.kv_lora_rank, kv_dtype))
                             : d(x.latent_dim()) * dtype_bytes(kv_dtype);
    if (m.indexer) bytes += d(m.indexer->head_dim + ceil_div(m.indexer->head_dim, 128) * 4);  // fp8 key + scale
    return bytes;
  }
  const int attn_tp = c.attn_tp_size();
  if (m.num_kv_heads % attn_tp != 0 && attn_tp % m.num_kv_heads != 0) {
    fail("model {}: num_key_value_heads {} and the attention TP size {} must divide one another", m.name,
         m.num_kv_heads, attn_tp);
  }
  return 2 * d(kv_heads_per_rank(m, attn_tp) * m.head_dim) * dtype_bytes(kv_dtype);
}

double weight_bytes_per_rank(const ModelSpec& model, const ParallelConfig& config, const WeightTensor& tensor,
                             int dense_tp_size) {
  return tensor_bytes_per_rank(model, resolve_degrees(model, config, dense_tp_size), tensor);
}

std::vector<MemoryEstimate> estimate_memory_per_stage(const ModelSpec& model, const ParallelConfig& config,
                                                      const MemoryRequest& request) {
  const Degrees degrees = resolve_degrees(model, config, request.dense_tp_size);
  MemoryRequest all = request;
  all.pp_stage = -1;
  check_request(config, all);
  const std::vector<LayerRange> ranges = pp_layer_ranges(model.num_layers, config.pp_size);
  std::vector<MemoryEstimate> stages;
  for (int stage = 0; stage < config.pp_size; ++stage) {
    stages.push_back(estimate_stage(model, config, request, degrees, stage, ranges[static_cast<std::size_t>(stage)]));
  }
  return stages;
}

MemoryRequest memory_request_for(const ScheduleOptions& options, const ParallelConfig& config, MoeMode moe_mode,
                                 double gpu_memory_bytes, double mem_fraction_static, DType kv_dtype) {
  if (!(mem_fraction_static > 0 && mem_fraction_static < 1)) {
    fail("--mem-fraction-static {} is invalid: a fraction strictly between 0 and 1", mem_fraction_static);
  }
  MemoryRequest r;
  r.phase = options.phase;
  r.context_tokens = options.prompt_tokens;
  r.batch = options.batch / config.attn_dp_size();
  r.gpu_memory_bytes = gpu_memory_bytes;
  r.mem_fraction_static = mem_fraction_static;
  r.kv_dtype = kv_dtype;
  r.moe_mode = moe_mode;
  r.dense_tp_size = config.attn_tp_size();
  r.cp_split = options.cp_split;
  if (r.phase == Phase::kPrefill) {
    // One forward pass is one micro-batch chunk of every request of the DP group.
    const int micro = options.micro_batches > 0 ? options.micro_batches : config.pp_size;
    r.forward_tokens = std::max<std::int64_t>(1, static_cast<std::int64_t>(r.batch) * options.prompt_tokens / micro);
  }
  return r;
}

MemoryEstimate estimate_memory(const ModelSpec& model, const ParallelConfig& config, const MemoryRequest& request) {
  check_request(config, request);
  std::vector<MemoryEstimate> stages = estimate_memory_per_stage(model, config, request);
  if (request.pp_stage >= 0) return stages[static_cast<std::size_t>(request.pp_stage)];
  const auto worst = std::max_element(stages.begin(), stages.end(),
                                      [](const auto& x, const auto& y) { return x.total_bytes < y.total_bytes; });
  return *worst;
}

}  // namespace paratwin
