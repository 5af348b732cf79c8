#include <catch2/catch.hpp>
#include <random>

#include "models/op_costs.hpp"
#include "topology/error.hpp"

using namespace paratwin;

namespace {

ComputeOp op(ComputeKind kind, DType dtype, const ComputeShape& shape) {
  ComputeOp o;
  o.kind = kind;
  o.dtype = dtype;
  o.shape = shape;
  return with_cost(o);
}

ComputeShape mnk(std::int64_t m, std::int64_t n, std::int64_t k = 0) {
  ComputeShape s;
  s.m = m;
  s.n = n;
  s.k = k;
  return s;
}

ComputeShape attention(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens, bool causal = true) {
  ComputeShape s;
  s.q_start = q_start;
  s.q_tokens = q_tokens;
  s.kv_tokens = kv_tokens;
  s.heads = 2;
  s.kv_heads = 1;
  s.head_dim_qk = 4;
  s.head_dim_v = 2;
  s.causal = causal;
  return s;
}

// Causal attention in DeepSeek's absorbed MLA form: `heads` query heads over one shared latent row per key
// (d_qk = 576: 512 latent + 64 rope dims; d_v = 512: the latent itself).
ComputeShape mla_attention(std::int64_t q_start, std::int64_t q_tokens, std::int64_t kv_tokens, std::int64_t heads) {
  ComputeShape s = attention(q_start, q_tokens, kv_tokens);
  s.heads = heads;
  s.head_dim_qk = 576;
  s.head_dim_v = 512;
  s.kv_shared = true;
  return s;
}

// Brute force: queries at q_start + i·q_stride, keys at kv_start + j·kv_stride, each query capped at `cap`.
std::int64_t brute_pairs(const ComputeShape& s, std::int64_t cap) {
  std::int64_t pairs = 0;
  for (std::int64_t i = 0; i < s.q_tokens; ++i) {
    const std::int64_t p = s.q_start + i * s.q_stride;
    std::int64_t seen = 0;
    for (std::int64_t j = 0; j < s.kv_tokens; ++j) {
      if (!s.causal || s.kv_start + j * s.kv_stride <= p) ++seen;
    }
    pairs += std::min(seen, cap);
  }
  return pairs;
}

}  // namespace

TEST_CASE("element-wise ops and GEMMs: hand-computed FLOPs and bytes", "[models][costs]") {
  SECTION("embedding: 3 int32 ids, 3 rows of 4 bf16 read and written") {
    const auto o = op(ComputeKind::kEmbedding, DType::kBf16, mnk(3, 4));
    CHECK(o.flops == 0);
    CHECK(o.bytes == 3 * 4 + 2 * 12 * 2);
  }
  SECTION("RMSNorm 2 × 8 bf16: 4 FLOPs per element; x, weight, y") {
    const auto o = op(ComputeKind::kRmsNorm, DType::kBf16, mnk(2, 8));
    CHECK(o.flops == 64);
    CHECK(o.bytes == (16 + 8 + 16) * 2);
  }
  SECTION("GEMM [2 × 4] · [4 × 3] bf16") {
    const auto o = op(ComputeKind::kGemm, DType::kBf16, mnk(2, 3, 4));
    CHECK(o.flops == 2 * 2 * 3 * 4);
    CHECK(o.bytes == (8 + 12 + 6) * 2);
  }
  SECTION("GEMM [2 × 256] · [256 × 128] fp8: 1×128 activation scales, 128×128 weight scales, bf16 output") {
    const auto o = op(ComputeKind::kGemm, DType::kFp8, mnk(2, 128, 256));
    CHECK(o.flops == 2.0 * 2 * 128 * 256);
    CHECK(o.bytes == (512 + 2 * 2 * 4) + (256 * 128 + 2 * 1 * 4) + 2 * 128 * 2);
  }
  SECTION("grouped GEMM rows {3, 0, 1}: only the two experts with rows read their weights") {
    ComputeShape s = mnk(4, 2, 4);
    s.group_rows = {3, 0, 1};
    const auto o = op(ComputeKind::kGroupedGemm, DType::kBf16, s);
    CHECK(o.flops == 2 * 4 * 2 * 4);
    CHECK(o.bytes == 4 * 4 * 2 + 2 * (4 * 2) * 2 + 4 * 2 * 2);
    s.m = 5;
    REQUIRE_THROWS_AS(op(ComputeKind::kGroupedGemm, DType::kBf16, s), InternalError);
  }
  SECTION("RoPE 2 tokens × 3 heads × 4 rope dims: 3 FLOPs per element, fp32 cos/sin per token") {
    ComputeShape s = mnk(2, 0);
    s.heads = 3;
    s.head_dim_qk = 4;
    const auto o = op(ComputeKind::kRope, DType::kBf16, s);
    CHECK(o.flops == 72);
    CHECK(o.bytes == 2 * 24 * 2 + 2 * 4 * 4);
  }
  SECTION("activation SiLU(g)·u, 2 × 4 bf16, and the fp8-quantising form") {
    const auto o = op(ComputeKind::kActivation, DType::kBf16, mnk(2, 4));
    CHECK(o.flops == 5 * 8);
    CHECK(o.bytes == 2 * 8 * 2 + 8 * 2);
    const auto q = op(ComputeKind::kActivation, DType::kFp8, mnk(1, 128));
    CHECK(q.bytes == 2 * 128 * 2 + 128 + 4);
  }
  SECTION("residual add and KV re-order") {
    const auto add = op(ComputeKind::kResidualAdd, DType::kBf16, mnk(2, 3));
    CHECK(add.flops == 6);
    CHECK(add.bytes == 3 * 6 * 2);
    const auto reorder = op(ComputeKind::kKvReorder, DType::kFp8, mnk(3, 5));
    CHECK(reorder.flops == 0);
    CHECK(reorder.bytes == 2 * 15);
  }
  SECTION("add fused into RMSNorm, 2 × 8 bf16: update and residual read, residual and output written, the weight") {
    const auto fused = op(ComputeKind::kAddRmsNorm, DType::kBf16, mnk(2, 8));
    CHECK(fused.flops == 5 * 16);
    CHECK(fused.bytes == (4 * 16 + 8) * 2);
    // The pair it replaces, less the norm's re-read of the sum.
    const auto add = op(ComputeKind::kResidualAdd, DType::kBf16, mnk(2, 8));
    const auto norm = op(ComputeKind::kRmsNorm, DType::kBf16, mnk(2, 8));
    CHECK(fused.flops == add.flops + norm.flops);
    CHECK(fused.bytes == add.bytes + norm.bytes - 16 * 2);
  }
}

TEST_CASE("MoE routing ops: hand-computed FLOPs and bytes", "[models][costs]") {
  SECTION("route: 4 tokens × 8 experts, top-2, fp32 logits") {
    ComputeShape s = mnk(4, 8);
    s.topk = 2;
    const auto o = op(ComputeKind::kMoeRoute, DType::kFp32, s);
    CHECK(o.flops == 3 * 32 + 2 * 8);
    CHECK(o.bytes == 32 * 4 + 8 * (4 + 4));
  }
  SECTION("permute: 3 tokens × top-2 = 6 copies of 256-wide fp8 rows (+2 scales each); 3 sources read once") {
    ComputeShape s = mnk(6, 256);
    s.topk = 2;
    const auto o = op(ComputeKind::kMoePermute, DType::kFp8, s);
    CHECK(o.flops == 0);
    CHECK(o.bytes == 3 * 264 + 6 * 264 + 6 * 4);
  }
  SECTION("unpermute: 6 weighted bf16 rows of 4 summed into 3 tokens") {
    ComputeShape s = mnk(6, 4);
    s.topk = 2;
    const auto o = op(ComputeKind::kMoeUnpermute, DType::kBf16, s);
    CHECK(o.flops == 2 * 24);
    CHECK(o.bytes == 24 * 2 + 6 * 8 + 3 * 4 * 2);
  }
  SECTION("unpermute with out_rows: 7 rows of 4 summed into 3 tokens (rows per token vary, topk unused)") {
    ComputeShape s = mnk(7, 4);
    s.out_rows = 3;
    const auto o = op(ComputeKind::kMoeUnpermute, DType::kBf16, s);
    CHECK(o.flops == 2 * 28);
    CHECK(o.bytes == 28 * 2 + 7 * 8 + 3 * 4 * 2);
  }
}

TEST_CASE("causal attention counts the unmasked pairs exactly", "[models][costs][attention]") {
  SECTION("a chunk at an offset: queries at 2, 3, 4 over 5 keys see 3 + 4 + 5 keys") {
    CHECK(causal_pairs(2, 3, 5) == 12);
    const auto o = op(ComputeKind::kAttention, DType::kBf16, attention(2, 3, 5));
    CHECK(o.flops == 2.0 * (4 + 2) * 2 * 12);
    // Q 3×2×4, O 3×2×2 (bf16), 5 keys × 1 KV head × (4 + 2) dims (bf16).
    CHECK(o.bytes == 3 * 2 * 4 * 2 + 3 * 2 * 2 * 2 + 5 * (4 + 2) * 2);
  }
  SECTION("queries past the cached keys are clipped to kv_tokens: positions 4..7 over 6 keys see 5 + 6 + 6 + 6") {
    CHECK(causal_pairs(4, 4, 6) == 23);
    CHECK(attention_pairs(attention(4, 4, 6)) == 23);
  }
  SECTION("a chunk that starts beyond the keys sees all of them") {
    CHECK(causal_pairs(10, 3, 4) == 12);
  }
  SECTION("the first chunk reads only the keys its last query sees") {
    // Queries 0, 1 over a 6-key cache: 1 + 2 pairs, keys 0 and 1 read.
    const auto o = op(ComputeKind::kAttention, DType::kBf16, attention(0, 2, 6));
    CHECK(o.flops == 2.0 * 6 * 2 * 3);
    CHECK(o.bytes == 2 * 2 * 4 * 2 + 2 * 2 * 2 * 2 + 2 * 6 * 2);
  }
  SECTION("non-causal attention sees every key") {
    CHECK(attention_pairs(attention(2, 3, 5, false)) == 15);
    const auto o = op(ComputeKind::kAttention, DType::kBf16, attention(2, 3, 5, false));
    CHECK(o.flops == 2.0 * 6 * 2 * 15);
  }
  SECTION("round-robin queries (stride 4 at 1, 5, 9) over 10 keys see 2 + 6 + 10") {
    ComputeShape s = attention(1, 3, 10);
    s.q_stride = 4;
    CHECK(attention_pairs(s) == 18);
  }
  SECTION("a strided ring block: keys at 2, 6, 10 seen by queries at 1, 5, 9: 0 + 1 + 2") {
    ComputeShape s = attention(1, 3, 3);
    s.q_stride = 4;
    s.kv_start = 2;
    s.kv_stride = 4;
    CHECK(attention_pairs(s) == 3);
    const auto o = op(ComputeKind::kAttention, DType::kBf16, s);
    CHECK(o.bytes == 3 * 2 * 4 * 2 + 3 * 2 * 2 * 2 + 2 * 6 * 2);  // keys 2 and 6 are read, 10 is not
  }
  SECTION("batch multiplies FLOPs and bytes") {
    ComputeShape s = attention(2, 3, 5);
    const auto one = op(ComputeKind::kAttention, DType::kBf16, s);
    s.batch = 3;
    const auto three = op(ComputeKind::kAttention, DType::kBf16, s);
    CHECK(three.flops == 3 * one.flops);
    CHECK(three.bytes == 3 * one.bytes);
  }
  SECTION("the closed form equals brute force on 2,000 random strided shapes") {
    std::mt19937 rng(12345);
    const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int trial = 0; trial < 2000; ++trial) {
      ComputeShape s;
      s.q_start = pick(0, 40);
      s.q_tokens = pick(0, 30);
      s.q_stride = pick(1, 7);
      s.kv_start = pick(0, 40);
      s.kv_tokens = pick(0, 30);
      s.kv_stride = pick(1, 7);
      s.topk = pick(0, 12);
      s.causal = pick(0, 4) != 0;
      INFO("q " << s.q_start << "+" << s.q_stride << "i, " << s.q_tokens << "; kv " << s.kv_start << "+" << s.kv_stride
                << "j, " << s.kv_tokens << "; topk " << s.topk << " causal " << s.causal);
      REQUIRE(attention_pairs(s) == brute_pairs(s, s.kv_tokens));
      REQUIRE(sparse_attention_pairs(s) == brute_pairs(s, std::min(s.topk, s.kv_tokens)));
    }
  }
}

TEST_CASE("MLA attention reads one shared latent row per key", "[models][costs][attention]") {
  // Absorbed MLA (decode-like): 2 heads, d_qk = 576 (latent + rope), d_v = 512, one query at position 9, 10 keys.
  ComputeShape s = mla_attention(9, 1, 10, 2);
  const auto bf16 = op(ComputeKind::kAttention, DType::kBf16, s);
  CHECK(bf16.flops == 2.0 * (576 + 512) * 2 * 10);
  CHECK(bf16.bytes == 1 * 2 * 576 * 2 + 1 * 2 * 512 * 2 + 10 * 1152);
  const auto fp8 = op(ComputeKind::kAttention, DType::kFp8, s);
  CHECK(fp8.bytes == 1 * 2 * 576 * 2 + 1 * 2 * 512 * 2 + 10 * 656);  // FlashMLA FP8 rows, bf16 Q and O
  CHECK(mla_latent_row_bytes(576, 512, DType::kBf16) == 1152);
  CHECK(mla_latent_row_bytes(576, 512, DType::kFp8) == 656);
  // Without kv_shared the same shape would count K and V separately.
  s.kv_shared = false;
  CHECK(op(ComputeKind::kAttention, DType::kBf16, s).bytes == 2304 + 2048 + 10 * (576 + 512) * 2);
}

TEST_CASE("DSA sparse attention, indexer scores and top-k: hand-computed costs", "[models][costs][attention]") {
  SECTION("sparse attention, top-3 over 5 causal queries at 0..4: 1 + 2 + 3 + 3 + 3 pairs") {
    ComputeShape s = mla_attention(0, 5, 5, 1);
    s.topk = 3;
    CHECK(sparse_pairs(0, 5, 5, 3) == 12);
    CHECK(sparse_attention_pairs(s) == 12);
    const auto o = op(ComputeKind::kSparseAttention, DType::kBf16, s);
    CHECK(o.flops == 2.0 * 1088 * 1 * 12);
    // Q 5×576, O 5×512 bf16; 5 distinct keys × 1152 B; 5 × 3 int32 indices.
    CHECK(o.bytes == 5 * 576 * 2 + 5 * 512 * 2 + 5 * 1152 + 5 * 3 * 4);
    CHECK(sparse_pairs(100, 4, 1000, 2048) == 101 + 102 + 103 + 104);
    CHECK(sparse_pairs(3000, 2, 4000, 2048) == 2 * 2048);
    CHECK(sparse_pairs(0, 4, 10, 3, false) == 12);
  }
  SECTION("indexer: 2 heads × 4 dims, fp8, queries at 1, 2 over 3 keys: 2 + 3 pairs") {
    ComputeShape s;
    s.q_start = 1;
    s.q_tokens = 2;
    s.kv_tokens = 3;
    s.heads = 2;
    s.head_dim_qk = 4;
    s.causal = true;
    const auto o = op(ComputeKind::kIndexerScore, DType::kFp8, s);
    CHECK(o.flops == 2.0 * 2 * (4 + 1) * 5);
    // q 2×2×4 fp8, weights 2×2 fp32, 3 keys × (4 fp8 + 1 fp32 scale), 5 fp32 logits.
    CHECK(o.bytes == 16 + 16 + 3 * (4 + 4) + 5 * 4);
  }
  SECTION("top-k over fp32 logits, plain and causal") {
    ComputeShape s = mnk(2, 10);
    s.topk = 3;
    const auto plain = op(ComputeKind::kTopK, DType::kFp32, s);
    CHECK(plain.flops == 20);
    CHECK(plain.bytes == 20 * 4 + 2 * 3 * 4);
    ComputeShape c;
    c.q_tokens = 4;
    c.n = 4;
    c.topk = 2;
    c.batch = 2;
    c.causal = true;
    const auto causal = op(ComputeKind::kTopK, DType::kFp32, c);
    CHECK(causal.flops == (1 + 2 + 3 + 4) * 2);
    CHECK(causal.bytes == 20 * 4 + 8 * 2 * 4);
  }
}

TEST_CASE("shapes that break a kind's contract are internal errors", "[models][costs]") {
  ComputeShape negative = mnk(-1, 4, 4);
  REQUIRE_THROWS_AS(op(ComputeKind::kGemm, DType::kBf16, negative), InternalError);
  ComputeShape no_heads = attention(0, 2, 2);
  no_heads.heads = 0;
  REQUIRE_THROWS_AS(op(ComputeKind::kAttention, DType::kBf16, no_heads), InternalError);
  ComputeShape zero_stride = attention(0, 2, 2);
  zero_stride.q_stride = 0;
  REQUIRE_THROWS_AS(op(ComputeKind::kAttention, DType::kBf16, zero_stride), InternalError);
  ComputeShape no_topk = mnk(2, 3);
  REQUIRE_THROWS_AS(op(ComputeKind::kTopK, DType::kFp32, no_topk), InternalError);
}

TEST_CASE("a DeepSeek-V3.2 decode step at 128K: sparse attention is ~64× cheaper than dense", "[models][costs]") {
  // One query at position 131071 with all 128 heads (attention TP 1), absorbed MLA over the FP8 latent cache.
  ComputeShape s = mla_attention(131071, 1, 131072, 128);
  const auto dense = op(ComputeKind::kAttention, DType::kFp8, s);
  s.topk = 2048;
  const auto sparse = op(ComputeKind::kSparseAttention, DType::kFp8, s);
  CHECK(dense.flops == 2.0 * 1088 * 128 * 131072);  // hardware-reference §6: 278,528 FLOP per key
  CHECK(sparse.flops == 2.0 * 1088 * 128 * 2048);   // 0.57 GFLOP
  CHECK(dense.flops / sparse.flops == 64);
  CHECK(sparse.bytes == 128 * 576 * 2 + 128 * 512 * 2 + 2048 * 656 + 2048 * 4);
}

TEST_CASE("DeepSeek-V3.2 prefill at 128K on round-robin CP rank 0 of 8: indexer and sparse-attention work",
          "[models][costs]") {
  // Rank 0 holds positions 0, 8, 16, ..., 131064: 16,384 queries over the 131,072 gathered keys.
  ComputeShape idx;
  idx.q_start = 0;
  idx.q_stride = 8;
  idx.q_tokens = 16384;
  idx.kv_tokens = 131072;
  idx.heads = 64;
  idx.head_dim_qk = 128;
  idx.causal = true;
  // Σ_i (8i + 1) for i < 16384 (the last query, at 131064, sees 131065 < 131072 keys).
  const std::int64_t idx_pairs = 8 * (16383 * 16384 / 2) + 16384;
  CHECK(idx_pairs == 1'073'692'672);
  CHECK(attention_pairs(idx) == idx_pairs);
  const auto score = op(ComputeKind::kIndexerScore, DType::kFp8, idx);
  CHECK(score.flops == 2.0 * 64 * 129 * static_cast<double>(idx_pairs));

  ComputeShape sparse_mla = mla_attention(0, 16384, 131072, 128);
  sparse_mla.q_stride = 8;
  sparse_mla.topk = 2048;
  // Queries i < 256 see 8i + 1 ≤ 2041 keys; the other 16,128 are capped at 2048.
  const std::int64_t sparse = 8 * (255 * 256 / 2) + 256 + (16384 - 256) * 2048;
  CHECK(sparse == 33'291'520);
  CHECK(sparse_attention_pairs(sparse_mla) == sparse);
  const auto attn = op(ComputeKind::kSparseAttention, DType::kFp8, sparse_mla);
  CHECK(attn.flops == 2.0 * 1088 * 128 * static_cast<double>(sparse));
  CHECK(score.flops / attn.flops == Approx(1.912).epsilon(0.001));  // the O(L²) indexer dominates at 128K
}
