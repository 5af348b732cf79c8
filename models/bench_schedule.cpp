#include "models/bench_schedule.hpp"

#include <fmt/format.h>

#include <array>
#include <bit>
#include <vector>

#include "models/builders/gemm_shapes.hpp"
#include "models/builders/op_emitter.hpp"
#include "topology/error.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {
namespace {

using build::gemm_shape;
using build::grouped_gemm_shape;
using i64 = std::int64_t;

ParallelConfig bench_config(int gpus) {
  ParallelConfig config;
  config.tp_size = gpus;
  if (gpus >= 4) config.attn_cp_size = gpus / 2;
  return config;
}

// The group families that give distinct group shapes in bench_config's layout.
std::vector<GroupFamily> bench_families(int gpus) {
  if (gpus < 2) return {};
  if (gpus == 2) return {GroupFamily::kTp};
  return {GroupFamily::kTp, GroupFamily::kAttnTp, GroupFamily::kAttnCp};
}

std::vector<i64> doubling_sizes(i64 min_bytes, i64 max_bytes) {
  std::vector<i64> sizes;
  for (i64 s = min_bytes; s <= max_bytes; s *= 2) sizes.push_back(s);
  return sizes;
}

// Appends the op and makes the next one wait for it, so that no two ops overlap.
class Chain {
 public:
  explicit Chain(build::RankEmitter& e) : e_(e) {}
  void compute(const std::string& name, ComputeKind kind, const ComputeShape& shape, DType dtype = DType::kBf16) {
    last_ = e_.compute(name, kind, shape, dtype, deps());
  }
  void collective(const std::string& name, CollectiveKind kind, GroupFamily family, i64 bytes,
                  std::vector<i64> send_bytes = {}, std::vector<i64> recv_bytes = {}) {
    last_ = e_.collective(name, kind, family, bytes, DType::kBf16, deps(), std::move(send_bytes),
                          std::move(recv_bytes));
  }
  void send(const std::string& name, int peer, i64 bytes, i64 match) {
    last_ = e_.send(name, peer, bytes, DType::kBf16, match, deps());
  }
  void recv(const std::string& name, int peer, i64 bytes, i64 match) {
    last_ = e_.recv(name, peer, bytes, DType::kBf16, match, deps());
  }

 private:
  std::vector<build::OpRef> deps() const {
    return last_ == build::kNoOp ? std::vector<build::OpRef>{} : std::vector<build::OpRef>{last_};
  }
  build::RankEmitter& e_;
  build::OpRef last_ = build::kNoOp;
};

void emit_collectives(Chain& chain, const RankLayout& layout, int rank, const std::vector<i64>& sizes) {
  for (const auto family : bench_families(layout.world_size())) {
    const auto n = static_cast<i64>(layout.group_of(family, rank).ranks.size());
    const auto prefix = fmt::format("bench.{}", family_key(family));
    for (const i64 size : sizes) {
      // `size` is nccl-tests' size: the larger of a rank's send and receive buffers.
      chain.collective(fmt::format("{}.all_gather.{}", prefix, size), CollectiveKind::kAllGather, family, size / n);
      chain.collective(fmt::format("{}.reduce_scatter.{}", prefix, size), CollectiveKind::kReduceScatter, family,
                       size / n);
      chain.collective(fmt::format("{}.all_reduce.{}", prefix, size), CollectiveKind::kAllReduce, family, size);
      chain.collective(fmt::format("{}.broadcast.{}", prefix, size), CollectiveKind::kBroadcast, family, size);
      const std::vector<i64> per_peer(static_cast<std::size_t>(n), size / n);
      chain.collective(fmt::format("{}.all_to_all.{}", prefix, size), CollectiveKind::kAllToAll, family, size,
                       per_peer, per_peer);
    }
  }
  // Point to point: even ranks send to the next odd rank, all pairs at once (PP and ring-CP hops).
  const int peer = rank ^ 1;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const i64 size = sizes[i];
    const auto match = static_cast<i64>(i) * layout.world_size() + std::min(rank, peer);
    if (rank % 2 == 0) {
      chain.send(fmt::format("bench.p2p.send.{}", size), peer, size, match);
    } else {
      chain.recv(fmt::format("bench.p2p.recv.{}", size), peer, size, match);
    }
  }
}

// GEMM rows (tokens) of the bf16 and fp8 GEMMs.
constexpr std::array<i64, 4> kGemmRows = {256, 1024, 4096, 16384};

ComputeShape attention_shape(i64 tokens, i64 heads, i64 kv_heads, i64 dim_qk, i64 dim_v, bool causal) {
  ComputeShape s;
  s.q_tokens = tokens;
  s.kv_tokens = tokens;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.head_dim_qk = dim_qk;
  s.head_dim_v = dim_v;
  s.causal = causal;
  return s;
}

// DeepSeek-V3.2's block-scaled fp8 GEMMs (fp8 weights with 128×128 block scales, so k is a multiple of 128), for the
// calibration's fp8 curves: they reach a smaller fraction of the fp8 peak than the sweep's bf16 GEMMs of the bf16 peak.
// Its projections at the bf16 GEMMs' rows: q_b_proj (q_lora_rank 1536 to 128 heads × 192) and the dense MLP's gate_up
// and down at TP 1 (intermediate 18432); and its routed experts' gate_up (8 experts, moe_intermediate 2048 × 2).
void emit_fp8_gemms(Chain& chain) {
  const std::array<std::pair<i64, i64>, 3> gemm_nk = {{{24576, 1536}, {36864, 7168}, {7168, 18432}}};
  for (const auto& [n, k] : gemm_nk) {
    for (const i64 m : kGemmRows) {
      chain.compute(fmt::format("bench.gemm_fp8.m{}.n{}.k{}", m, n, k), ComputeKind::kGemm, gemm_shape(m, n, k),
                    DType::kFp8);
    }
  }
  for (const i64 rows_per_expert : {256, 1024}) {
    chain.compute(fmt::format("bench.moe.grouped_gemm_fp8.e8.r{}", rows_per_expert), ComputeKind::kGroupedGemm,
                  grouped_gemm_shape(8, rows_per_expert, 4096, 7168), DType::kFp8);
  }
}

// Shapes in the range of the zoo's models (hidden 4096–8192, FFN up to 14336, 128–256 experts, head dims 128–576)
// at token counts from a short prompt's CP shard to a long one's.
void emit_compute(Chain& chain) {
  const std::array<std::pair<i64, i64>, 5> gemm_nk = {{{1024, 1024}, {4096, 4096}, {8192, 8192}, {14336, 4096},
                                                        {4096, 14336}}};
  for (const auto& [n, k] : gemm_nk) {
    for (const i64 m : kGemmRows) {
      chain.compute(fmt::format("bench.gemm.m{}.n{}.k{}", m, n, k), ComputeKind::kGemm, gemm_shape(m, n, k));
    }
  }
  // Weight-streaming GEMMs, memory-bound: the last token's LM head (DeepSeek-V3's vocabulary and hidden size) and
  // 16-row products against MLP-sized weights. The small GEMMs above are memory-bound by their bytes too, but their
  // time is latency (a few µs for a few MB), which would leave the memory curve at a few percent of HBM.
  const std::array<std::array<i64, 3>, 3> streaming_mnk = {{{1, 129280, 7168}, {16, 14336, 4096}, {16, 4096, 14336}}};
  for (const auto& [m, n, k] : streaming_mnk) {
    chain.compute(fmt::format("bench.gemm.m{}.n{}.k{}", m, n, k), ComputeKind::kGemm, gemm_shape(m, n, k));
  }
  for (const i64 rows_per_expert : {64, 256, 1024, 4096}) {
    chain.compute(fmt::format("bench.moe.grouped_gemm.e8.r{}", rows_per_expert), ComputeKind::kGroupedGemm,
                  grouped_gemm_shape(8, rows_per_expert, 4096, 2048));
  }
  // MLA's per-head absorb GEMMs as DeepSeek-V3.2's absorbed form declares them (128 heads, q_nope 128 → latent 512
  // and back to v 128; models/builders/attention_tp.cpp): grouped GEMMs that are not experts', so the backend runs
  // them as one batched call, and memory-bound, so they give the grouped memory curve points at the rows per group
  // of a CP shard (the MoE shapes above give it one, at 64 rows).
  for (const i64 tokens : {1024, 4096}) {
    chain.compute(fmt::format("bench.mla.q_absorb.t{}", tokens), ComputeKind::kGroupedGemm,
                  grouped_gemm_shape(128, tokens, 512, 128));
    chain.compute(fmt::format("bench.mla.v_unabsorb.t{}", tokens), ComputeKind::kGroupedGemm,
                  grouped_gemm_shape(128, tokens, 128, 512));
  }
  // Causal GQA attention up to 32K tokens, the longest prompt of the accuracy runs: a long prompt's attention is read
  // from a point at its size, not clamped to a shorter one (cuDNN's causal rate on an H200: 672 TFLOP/s at 16K, 610
  // at 32K; docs/performance.md, "Dense attention").
  for (const i64 t : {512, 1024, 2048, 4096, 8192, 16384, 32768}) {
    chain.compute(fmt::format("bench.attention.gqa.t{}", t), ComputeKind::kAttention,
                  attention_shape(t, 32, 8, 128, 128, true));
  }
  chain.compute("bench.attention.gqa.noncausal.t1024", ComputeKind::kAttention,
                attention_shape(1024, 32, 8, 128, 128, false));
  for (const i64 t : {1024, 4096}) {
    chain.compute(fmt::format("bench.attention.mla.t{}", t), ComputeKind::kAttention,
                  attention_shape(t, 16, 16, 192, 128, true));
  }
  // Rows from one token (the last token's final norm) to a long prompt, every 4× up to 256: the small sizes are
  // latency-bound (a few µs whatever the bytes), which only points of their own let the memory curves say.
  for (const i64 m : {1, 16, 64, 256, 1024, 4096, 16384}) {
    ComputeShape s;
    s.m = m;
    s.n = 4096;
    chain.compute(fmt::format("bench.rms_norm.m{}", m), ComputeKind::kRmsNorm, s);
    chain.compute(fmt::format("bench.residual_add.m{}", m), ComputeKind::kResidualAdd, s);
    chain.compute(fmt::format("bench.add_rms_norm.m{}", m), ComputeKind::kAddRmsNorm, s);
    chain.compute(fmt::format("bench.embedding.m{}", m), ComputeKind::kEmbedding, s);
    ComputeShape act = s;
    act.n = 8192;
    chain.compute(fmt::format("bench.activation.m{}", m), ComputeKind::kActivation, act);
    ComputeShape rope;
    rope.m = m;
    rope.heads = 40;
    rope.head_dim_qk = 128;
    chain.compute(fmt::format("bench.rope.m{}", m), ComputeKind::kRope, rope);
    ComputeShape reorder;
    reorder.m = m;
    reorder.n = 1024;
    chain.compute(fmt::format("bench.kv_reorder.m{}", m), ComputeKind::kKvReorder, reorder);
    ComputeShape route;
    route.m = m;
    route.n = 256;
    route.topk = 8;
    chain.compute(fmt::format("bench.moe_route.m{}", m), ComputeKind::kMoeRoute, route);
  }
  for (const i64 tokens : {1024, 4096}) {
    ComputeShape s;
    s.m = tokens * 8;
    s.n = 4096;
    s.topk = 8;
    chain.compute(fmt::format("bench.moe_permute.t{}", tokens), ComputeKind::kMoePermute, s);
    chain.compute(fmt::format("bench.moe_unpermute.t{}", tokens), ComputeKind::kMoeUnpermute, s);
  }
  // DeepSeek-V3.2's DSA as its layers declare it (models/builders/attention_tp.cpp), so that a calibration fitted on
  // the sweep times the kernels those layers run: the indexer's scores in fp8 (64 heads of 128), the top-2048 keys per
  // query, and the index-sparse MLA attention over them in the absorbed form (128 heads: attention TP 1, whose 64-head
  // blocks the backend's sparse MLA kernel takes; 576/512 head dims, one shared latent KV head).
  constexpr i64 kDsaTopK = 2048;
  for (const i64 t : {4096, 8192}) {
    auto score = attention_shape(t, 64, 1, 128, 0, true);
    chain.compute(fmt::format("bench.indexer_score.t{}", t), ComputeKind::kIndexerScore, score, DType::kFp8);
    ComputeShape topk;
    topk.q_tokens = t;
    topk.n = t;
    topk.topk = kDsaTopK;
    topk.causal = true;
    chain.compute(fmt::format("bench.top_k.t{}", t), ComputeKind::kTopK, topk, DType::kFp32);
    // The last t queries of a 2t-token prompt: every one selects top-k keys, as nearly all of a long prompt's do. The
    // kernel computes all top-k slots of every query (unselected ones masked), while the op's FLOPs count the selected
    // ones, so a prompt's first queries (fewer than top-k keys to pick) would read as a slower kernel: the sweep's
    // earlier form, the first t queries, priced DeepSeek-V3.2's 8K CP = 2 shards' sparse attention 21-29 % slow.
    auto sparse = attention_shape(t, 128, 1, 576, 512, true);
    sparse.kv_tokens = 2 * t;
    sparse.q_start = t;
    sparse.kv_shared = true;
    sparse.topk = kDsaTopK;
    chain.compute(fmt::format("bench.sparse_attention.t{}", t), ComputeKind::kSparseAttention, sparse);
  }
  emit_fp8_gemms(chain);
}

}  // namespace

Schedule build_bench_schedule(const BenchScheduleOptions& o) {
  if (o.gpus != 1 && o.gpus != 2 && (o.gpus < 4 || o.gpus % 4 != 0)) {
    fail("--gpus {}: the bench runs on 1, 2 or a multiple of 4 GPUs (groups of 2, n/2 and n ranks)", o.gpus);
  }
  if (o.collectives) {
    if (o.min_bytes <= 0 || o.max_bytes < o.min_bytes) {
      fail("--min-bytes {} and --max-bytes {}: need 0 < min ≤ max", o.min_bytes, o.max_bytes);
    }
    if (!std::has_single_bit(static_cast<std::uint64_t>(o.max_bytes / o.min_bytes)) ||
        o.max_bytes % o.min_bytes != 0) {
      fail("--max-bytes {} must be --min-bytes {} times a power of two (sizes double)", o.max_bytes, o.min_bytes);
    }
    const i64 quantum = i64{2} * o.gpus * 16;
    if (o.min_bytes % quantum != 0) {
      fail("--min-bytes {} must be a multiple of {} (2 × gpus × 16 bytes: whole 16-byte vectors per rank)",
           o.min_bytes, quantum);
    }
  }
  const auto config = bench_config(o.gpus);
  const RankLayout layout(config);
  Schedule schedule;
  schedule.meta.model = "bench";
  schedule.meta.config = config;
  schedule.meta.phase = Phase::kPrefill;
  schedule.meta.micro_batches = 1;
  schedule.ranks.resize(static_cast<std::size_t>(o.gpus));
  build::CollectiveNumbering numbering;
  const auto sizes = doubling_sizes(o.min_bytes, o.max_bytes);
  for (int rank = 0; rank < o.gpus; ++rank) {
    build::RankEmitter e(rank, layout, numbering, schedule.ranks[static_cast<std::size_t>(rank)]);
    Chain chain(e);
    if (o.collectives && o.gpus > 1) emit_collectives(chain, layout, rank, sizes);
    if (o.compute) emit_compute(chain);
  }
  return schedule;
}

}  // namespace paratwin
