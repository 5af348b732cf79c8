#include "models/op_costs.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

#include "topology/error.hpp"

namespace paratwin {

namespace {

/// FP8 tiles of DeepSeek-V3-style block quantisation: activations 1×128 groups, weights 128×128 blocks, one fp32
/// scale each.
constexpr std::int64_t kFp8Group = 128;
constexpr double kScaleBytes = 4;
constexpr double kIndexBytes = 4;  // int32 indices
constexpr double kFp32Bytes = 4;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

/// Bytes of the 16-bit activations around an op of type `dtype`: 2 (bf16 in/out of FP8 GEMMs and attention), 4 for
/// fp32 ops.
double activation_elem_bytes(DType dtype) {
  return dtype == DType::kFp32 ? 4.0 : 2.0;
}

/// Bytes of an [rows × cols] operand in `dtype`, with per-row 1×128 FP8 group scales.
double activation_operand_bytes(std::int64_t rows, std::int64_t cols, DType dtype) {
  if (dtype == DType::kFp8) {
    return static_cast<double>(rows * cols) + static_cast<double>(rows * ceil_div(cols, kFp8Group)) * kScaleBytes;
  }
  return static_cast<double>(rows * cols) * dtype_bytes(dtype);
}

/// Bytes of a [k × n] weight in `dtype`, with 128×128 FP8 block scales.
double weight_operand_bytes(std::int64_t k, std::int64_t n, DType dtype) {
  if (dtype == DType::kFp8) {
    return static_cast<double>(k * n) +
           static_cast<double>(ceil_div(k, kFp8Group) * ceil_div(n, kFp8Group)) * kScaleBytes;
  }
  return static_cast<double>(k * n) * dtype_bytes(dtype);
}

/// Σ_{i=0}^{n−1} ⌊(a·i + b) / m⌋ for a, b ≥ 0, m ≥ 1 (the classic Euclid-like floor sum, O(log)).
std::int64_t floor_sum(std::int64_t n, std::int64_t m, std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  while (true) {
    if (a >= m) {
      sum += n * (n - 1) / 2 * (a / m);
      a %= m;
    }
    if (b >= m) {
      sum += n * (b / m);
      b %= m;
    }
    const std::int64_t y_max = a * n + b;
    if (y_max < m) break;
    n = y_max / m;
    b = y_max % m;
    std::swap(m, a);
  }
  return sum;
}

/// Keys at kv_start + j·kv_stride (j < kv_tokens) that a query at position p may see (causal), capped at `cap`.
std::int64_t visible_keys(const ComputeShape& s, std::int64_t p, std::int64_t cap) {
  if (p < s.kv_start) return 0;
  return std::min((p - s.kv_start) / s.kv_stride + 1, cap);
}

/// Σ over queries of min(cap, keys the query may see): exact for strided queries and keys.
std::int64_t capped_pairs(const ComputeShape& s, std::int64_t cap) {
  if (s.q_tokens == 0 || cap == 0) return 0;
  if (!s.causal) return s.q_tokens * cap;
  const std::int64_t qs = s.q_stride, ks = s.kv_stride;
  const auto first_at_least = [&](std::int64_t position) {  // first i with q_start + i·qs ≥ position, in [0, Q]
    if (s.q_start >= position) return std::int64_t{0};
    return std::min(s.q_tokens, ceil_div(position - s.q_start, qs));
  };
  const std::int64_t i0 = first_at_least(s.kv_start);                                 // queries before: see nothing
  const std::int64_t i1 = std::max(i0, first_at_least(s.kv_start + (cap - 1) * ks));  // from here: see cap
  // Between: ⌊(q_start + i·qs − kv_start) / ks⌋ + 1 = ⌊(qs·(i − i0) + b) / ks⌋,
  // with b = p(i0) − kv_start + ks ≥ ks.
  const std::int64_t b = s.q_start + i0 * qs - s.kv_start + ks;
  return floor_sum(i1 - i0, ks, qs, b) + (s.q_tokens - i1) * cap;
}

/// Keys at least one query may see (read once from the cache).
std::int64_t reachable_keys(const ComputeShape& s) {
  if (!s.causal) return s.kv_tokens;
  if (s.q_tokens == 0) return 0;
  return visible_keys(s, s.q_start + (s.q_tokens - 1) * s.q_stride, s.kv_tokens);
}

/// Bytes of one cached key position for attention (all KV heads, K and V).
double kv_row_bytes(const ComputeShape& s, DType dtype) {
  if (s.kv_shared) return static_cast<double>(mla_latent_row_bytes(s.head_dim_qk, s.head_dim_v, dtype));
  return static_cast<double>(s.kv_heads * (s.head_dim_qk + s.head_dim_v)) * dtype_bytes(dtype);
}

void check_shape(const ComputeOp& op) {
  const ComputeShape& s = op.shape;
  PARATWIN_ASSERT(s.m >= 0 && s.n >= 0 && s.k >= 0 && s.q_tokens >= 0 && s.kv_tokens >= 0 && s.q_start >= 0 &&
                      s.kv_start >= 0 && s.heads >= 0 && s.kv_heads >= 0 && s.head_dim_qk >= 0 && s.head_dim_v >= 0 &&
                      s.topk >= 0,
                  "{} op has a negative shape field", to_string(op.kind));
  PARATWIN_ASSERT(s.q_stride >= 1 && s.kv_stride >= 1 && s.batch >= 1,
                  "{} op needs strides and batch ≥ 1, got {}, {}, {}", to_string(op.kind), s.q_stride, s.kv_stride,
                  s.batch);
}

/// Attention-like cost of `batch` requests: per request `pairs` scores, Q and O once, `keys_read` cached key rows,
/// plus `extra_bytes`.
void attention_cost(ComputeOp& op, std::int64_t pairs, std::int64_t keys_read, double extra_bytes) {
  const ComputeShape& s = op.shape;
  PARATWIN_ASSERT(s.heads > 0 && s.head_dim_qk > 0 && s.head_dim_v > 0, "{} needs heads and head dims",
                  to_string(op.kind));
  PARATWIN_ASSERT(s.kv_shared || s.kv_heads > 0, "{} needs kv_heads (or kv_shared for MLA)", to_string(op.kind));
  PARATWIN_ASSERT(!s.kv_shared || s.head_dim_v <= s.head_dim_qk,
                  "kv_shared needs head_dim_v ≤ head_dim_qk, got {} > {}", s.head_dim_v, s.head_dim_qk);
  const double act = activation_elem_bytes(op.dtype);
  const double batch = static_cast<double>(s.batch);
  op.flops = batch * 2.0 * static_cast<double>(s.head_dim_qk + s.head_dim_v) * static_cast<double>(s.heads) *
             static_cast<double>(pairs);
  const double q_bytes = static_cast<double>(s.q_tokens * s.heads * s.head_dim_qk) * act;
  const double o_bytes = static_cast<double>(s.q_tokens * s.heads * s.head_dim_v) * act;
  op.bytes = batch * (q_bytes + o_bytes + static_cast<double>(keys_read) * kv_row_bytes(s, op.dtype) + extra_bytes);
}

}  // namespace

std::int64_t causal_pairs(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens) {
  PARATWIN_ASSERT(q_start >= 0 && q_tokens >= 0 && kv_tokens >= 0, "negative attention extent ({}, {}, {})", q_start,
                  q_tokens, kv_tokens);
  // Σ_{p = q_start}^{q_start + q_tokens − 1} min(p + 1, kv_tokens) = Σ_{v = a}^{b} min(v, K), a = q_start + 1,
  // b = q_start + q_tokens: an arithmetic series up to min(b, K), then K for every later query.
  if (q_tokens == 0 || kv_tokens == 0) return 0;
  const std::int64_t a = q_start + 1;
  const std::int64_t b = q_start + q_tokens;
  const std::int64_t k = kv_tokens;
  if (a > k) return q_tokens * k;
  const std::int64_t top = std::min(b, k);
  const std::int64_t series = (a + top) * (top - a + 1) / 2;
  return series + (b - top) * k;
}

std::int64_t sparse_pairs(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens, std::int64_t topk,
                          bool causal) {
  PARATWIN_ASSERT(topk >= 0, "negative topk {}", topk);
  // min(topk, p + 1, K) = min(p + 1, min(topk, K)): a causal count with the key range clipped to topk.
  const std::int64_t cap = std::min(topk, kv_tokens);
  if (!causal) return q_tokens * cap;
  return causal_pairs(q_start, q_tokens, cap);
}

std::int64_t attention_pairs(const ComputeShape& shape) {
  return capped_pairs(shape, shape.kv_tokens);
}

std::int64_t sparse_attention_pairs(const ComputeShape& shape) {
  return capped_pairs(shape, std::min(shape.topk, shape.kv_tokens));
}

std::int64_t mla_latent_row_bytes(std::int64_t latent_dim, std::int64_t v_dim, DType dtype) {
  PARATWIN_ASSERT(v_dim > 0 && v_dim <= latent_dim, "MLA latent {} with value part {}", latent_dim, v_dim);
  if (dtype == DType::kFp8) {
    return v_dim + ceil_div(v_dim, kFp8Group) * 4 + (latent_dim - v_dim) * 2;
  }
  return latent_dim * static_cast<std::int64_t>(dtype_bytes(dtype));
}

void fill_cost(ComputeOp& op) {
  check_shape(op);
  const ComputeShape& s = op.shape;
  const double e = dtype_bytes(op.dtype);
  const double act = activation_elem_bytes(op.dtype);
  const auto d = [](std::int64_t v) { return static_cast<double>(v); };
  op.flops = 0;
  op.bytes = 0;
  switch (op.kind) {
    case ComputeKind::kEmbedding:
      // Token ids in, m table rows gathered, m rows out.
      op.bytes = d(s.m) * kIndexBytes + 2 * d(s.m * s.n) * e;
      break;
    case ComputeKind::kRmsNorm:
      // Square-accumulate and scale-by-weight: 4 FLOPs per element; read x and the weight, write y.
      op.flops = 4 * d(s.m * s.n);
      op.bytes = (2 * d(s.m * s.n) + d(s.n)) * e;
      break;
    case ComputeKind::kGemm:
      op.flops = 2 * d(s.m) * d(s.n) * d(s.k);
      op.bytes =
          activation_operand_bytes(s.m, s.k, op.dtype) + weight_operand_bytes(s.k, s.n, op.dtype) + d(s.m * s.n) * act;
      break;
    case ComputeKind::kGroupedGemm: {
      const std::int64_t rows = std::accumulate(s.group_rows.begin(), s.group_rows.end(), std::int64_t{0});
      PARATWIN_ASSERT(rows == s.m, "grouped GEMM: Σ group_rows = {} but m = {}", rows, s.m);
      PARATWIN_ASSERT(std::all_of(s.group_rows.begin(), s.group_rows.end(), [](std::int64_t r) { return r >= 0; }),
                      "grouped GEMM with a negative group");
      const auto active = static_cast<std::int64_t>(
          std::count_if(s.group_rows.begin(), s.group_rows.end(), [](std::int64_t r) { return r > 0; }));
      op.flops = 2 * d(s.m) * d(s.n) * d(s.k);
      op.bytes = activation_operand_bytes(s.m, s.k, op.dtype) + d(active) * weight_operand_bytes(s.k, s.n, op.dtype) +
                 d(s.m * s.n) * act;
      break;
    }
    case ComputeKind::kRope: {
      // Rotating a pair (x, x') costs 2 multiplies and 1 add per output element; cos/sin read in fp32.
      const double elems = d(s.m * s.heads * s.head_dim_qk);
      op.flops = 3 * elems;
      op.bytes = 2 * elems * e + d(s.m * s.head_dim_qk) * kFp32Bytes;
      break;
    }
    case ComputeKind::kAttention:
      attention_cost(op, attention_pairs(s), reachable_keys(s), 0);
      break;
    case ComputeKind::kSparseAttention: {
      PARATWIN_ASSERT(s.topk > 0, "sparse attention needs topk");
      const std::int64_t pairs = sparse_attention_pairs(s);
      // Selected keys are read once: at most every reachable key, at most one per (query, selection).
      const std::int64_t keys = std::min(reachable_keys(s), pairs);
      attention_cost(op, pairs, keys, d(s.q_tokens * s.topk) * kIndexBytes);
      break;
    }
    case ComputeKind::kIndexerScore: {
      PARATWIN_ASSERT(s.heads > 0 && s.head_dim_qk > 0, "indexer needs heads and head_dim_qk");
      const std::int64_t pairs = attention_pairs(s);
      // Per pair and head: a head_dim dot product, then ReLU and the weighted sum over heads (one multiply-add).
      op.flops = d(s.batch) * 2 * d(s.heads) * d(s.head_dim_qk + 1) * d(pairs);
      const double key_bytes =
          d(s.head_dim_qk) * e + (op.dtype == DType::kFp8 ? d(ceil_div(s.head_dim_qk, kFp8Group)) * kScaleBytes : 0);
      op.bytes = d(s.batch) * (d(s.q_tokens * s.heads * s.head_dim_qk) * e  // q
                               + d(s.q_tokens * s.heads) * kFp32Bytes       // per-head weights
                               + d(reachable_keys(s)) * key_bytes           // indexer keys (+ scales)
                               + d(pairs) * kFp32Bytes);                    // logits of the unmasked pairs
      break;
    }
    case ComputeKind::kTopK: {
      PARATWIN_ASSERT(s.topk > 0, "top-k needs topk");
      std::int64_t rows = s.m, values = s.m * s.n;
      if (s.causal) {
        // The rows are the indexer's queries; the one at position p holds min(p + 1, n) logits.
        ComputeShape rows_shape = s;
        rows_shape.kv_tokens = s.n;
        rows_shape.kv_start = 0;
        rows_shape.kv_stride = 1;
        rows = s.q_tokens * s.batch;
        values = attention_pairs(rows_shape) * s.batch;
      }
      op.flops = d(values);  // one comparison per candidate
      op.bytes = d(values) * e + d(rows * s.topk) * kIndexBytes;
      break;
    }
    case ComputeKind::kMoeRoute:
      PARATWIN_ASSERT(s.topk > 0 && s.topk <= s.n, "MoE route needs 0 < topk ≤ experts, got {} of {}", s.topk, s.n);
      // Score function, bias/normalisation and selection per logit; renormalise and scale each chosen weight.
      op.flops = 3 * d(s.m * s.n) + 2 * d(s.m * s.topk);
      op.bytes = d(s.m * s.n) * e + d(s.m * s.topk) * (kIndexBytes + kFp32Bytes);
      break;
    case ComputeKind::kMoePermute: {
      // m copies of n-wide rows gathered from m / topk source tokens (each source row read once); with FP8 each row
      // carries its 1×128 group scales.
      const std::int64_t sources = s.topk > 0 ? ceil_div(s.m, s.topk) : s.m;
      const double row = d(s.n) * e + (op.dtype == DType::kFp8 ? d(ceil_div(s.n, kFp8Group)) * kScaleBytes : 0);
      op.bytes = d(sources) * row + d(s.m) * row + d(s.m) * kIndexBytes;
      break;
    }
    case ComputeKind::kMoeUnpermute: {
      // Weighted scatter-add of m expert-output rows into m / topk token rows (out_rows where rows per token vary).
      PARATWIN_ASSERT(s.out_rows >= 0, "MoE unpermute with {} out_rows", s.out_rows);
      const std::int64_t tokens = s.out_rows > 0 ? s.out_rows : s.topk > 0 ? ceil_div(s.m, s.topk) : s.m;
      op.flops = 2 * d(s.m * s.n);
      op.bytes = d(s.m * s.n) * e + d(s.m) * (kFp32Bytes + kIndexBytes) + d(tokens * s.n) * e;
      break;
    }
    case ComputeKind::kActivation:
      // SiLU(g)·u = g·σ(g)·u: exp, add, divide, two multiplies per output element. Input [m × 2n] is the 16-bit
      // gate/up GEMM output; an FP8 op quantises its output (1×128 group scales) for the next FP8 GEMM.
      op.flops = 5 * d(s.m * s.n);
      op.bytes = 2 * d(s.m * s.n) * act + activation_operand_bytes(s.m, s.n, op.dtype);
      break;
    case ComputeKind::kResidualAdd:
      op.flops = d(s.m * s.n);
      op.bytes = 3 * d(s.m * s.n) * e;
      break;
    case ComputeKind::kKvReorder:
      op.bytes = 2 * d(s.m * s.n) * e;
      break;
    case ComputeKind::kAddRmsNorm:
      // The add (1 FLOP) and the norm (4) per element; read the update, the residual and the weight, write the new
      // residual and the normed rows: the two ops' bytes less the norm's re-read of the sum.
      op.flops = 5 * d(s.m * s.n);
      op.bytes = (4 * d(s.m * s.n) + d(s.n)) * e;
      break;
  }
}

ComputeOp with_cost(ComputeOp op) {
  fill_cost(op);
  return op;
}

ParameterCounts count_parameters(const ModelSpec& model) {
  ParameterCounts c;
  const auto add = [&](const WeightTensor& w) {
    const std::int64_t params = w.params();
    const std::int64_t activated =
        w.role == WeightRole::kRoutedExpert ? w.rows * w.cols * model.moe->experts_per_token : params;
    c.total += params;
    c.activated += activated;
    if (w.linear) c.activated_linear += activated;
    switch (w.role) {
      case WeightRole::kEmbedding:
        c.embedding += params;
        break;
      case WeightRole::kLmHead:
        c.lm_head += params;
        break;
      case WeightRole::kNorm:
        c.norms += params;
        break;
      case WeightRole::kAttention:
        c.attention += params;
        break;
      case WeightRole::kIndexer:
        c.indexer += params;
        break;
      case WeightRole::kDenseMlp:
        c.dense_mlp += params;
        break;
      case WeightRole::kRouter:
        c.router += params;
        break;
      case WeightRole::kSharedExpert:
        c.shared_experts += params;
        break;
      case WeightRole::kRoutedExpert:
        c.routed_experts += params;
        break;
    }
  };
  for (const WeightTensor& w : non_layer_weights(model)) add(w);
  for (int layer = 0; layer < model.num_layers; ++layer) {
    for (const WeightTensor& w : layer_weights(model, layer)) add(w);
  }
  if (model.tie_word_embeddings) {
    // The tied table is also the output projection: a token multiplies through it once.
    c.activated_linear += model.vocab_size * model.hidden_size;
  }
  return c;
}

double linear_flops_per_token(const ModelSpec& model) {
  return 2.0 * static_cast<double>(count_parameters(model).activated_linear);
}

}  // namespace paratwin
