// Binder::bind_generic: every op without the real data flow, on scratch buffers of its shape (binder.hpp).
#include "backend/cuda/binder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/tensor_map.hpp"
#include "backend/cuda_plan/indexer_score_rule.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda::binding {

void Binder::bind_generic(const Op& op, BoundOp& b) {
  auto& pool = p_.pool;
  if (!std::holds_alternative<ComputeOp>(op.body)) {
    const int send = pool.request("g.send", 16);
    const int recv = pool.request("g.recv", 16);
    bind_comm(op, b, send, recv);
    return;
  }
  const auto& c = std::get<ComputeOp>(op.body);
  const auto& s = c.shape;
  const i64 m = s.m, n = s.n, k = s.k;
  switch (c.kind) {
    case ComputeKind::kGemm:
    case ComputeKind::kGroupedGemm: {
      const bool fp8 = c.dtype == DType::kFp8;
      const bool grouped = c.kind == ComputeKind::kGroupedGemm;
      const i64 experts = grouped ? static_cast<i64>(s.group_rows.size()) : 1;
      const auto group_rows = grouped ? s.group_rows : std::vector<i64>{m};
      const int y = pool.request("g.y", bf(m * n));
      if (fp8) {
        b.compute = bind_fp8_gemm(op, group_rows, n, k, y, grouped && runs_as_experts(op));
        return;
      }
      const int a = pool.request("g.a", m * k * 2);
      const int w =
          weight("w:" + op.name, experts * k, n, 0, n, {}, std::sqrt(3.0f / static_cast<float>(std::max<i64>(k, 1))));
      if (grouped) {
        GroupedGemm::Operands operands{a, y, {}};
        for (i64 g = 0; g < experts; ++g) operands.weights.push_back({w, g * k * n * 2});
        b.compute = bind_grouped_gemm(op, s.group_rows, n, k, operands);
        return;
      }
      b.compute = [=](const ExecCtx& e) { gemm(e, e.pool->ptr(a), e.pool->ptr(w), e.pool->ptr(y), m, n, k, false); };
      return;
    }
    case ComputeKind::kEmbedding:
    case ComputeKind::kKvReorder:
    case ComputeKind::kMoePermute: {
      const i64 row_bytes =
          c.kind == ComputeKind::kKvReorder ? static_cast<i64>(static_cast<double>(n) * dtype_bytes(c.dtype)) : n * 2;
      const int src = pool.request("g.y", m * row_bytes);
      const int dst = pool.request("g.a", m * row_bytes);
      int map = -1;
      if (c.kind == ComputeKind::kMoePermute && s.topk > 1) {
        std::vector<int> v(static_cast<std::size_t>(m));
        for (i64 i = 0; i < m; ++i)
          v[static_cast<std::size_t>(i)] = static_cast<int>((i % s.topk) * (m / s.topk) + i / s.topk);
        map = pool.ints(fmt::format("g.permute.{}.{}", m, s.topk), std::move(v));
      }
      b.compute = [=](const ExecCtx& e) {
        launch_gather_rows(e.pool->ptr(src), e.pool->ptr(dst), m, row_bytes,
                           map >= 0 ? static_cast<const int*>(e.pool->ptr(map)) : nullptr, e.stream);
      };
      return;
    }
    case ComputeKind::kRmsNorm: {
      const int in = pool.request("g.a", bf(m * n));
      const int out = pool.request("g.y", bf(m * n));
      const int w = weight(fmt::format("g.norm.{}", n), 1, n, 0, n, {}, 0.1f, 1.0f);
      b.compute = [=](const ExecCtx& e) {
        launch_rmsnorm(e.pool->ptr(in), e.pool->ptr(out), e.pool->ptr(w), m, n, 1, n, nullptr, 1e-6f, e.stream);
      };
      return;
    }
    case ComputeKind::kAddRmsNorm: {
      const int residual = pool.request("g.a", bf(m * n));
      const int update = pool.request("g.y", bf(m * n));
      const int out = pool.request("g.o", bf(m * n));
      const int w = weight(fmt::format("g.norm.{}", n), 1, n, 0, n, {}, 0.1f, 1.0f);
      b.compute = [=](const ExecCtx& e) {
        launch_add_rmsnorm(e.pool->ptr(residual), e.pool->ptr(update), e.pool->ptr(out), e.pool->ptr(w), m, n, 1e-6f,
                           e.stream);
      };
      return;
    }
    case ComputeKind::kRope: {
      const int x = pool.request("g.y", bf(m * s.heads * s.head_dim_qk));
      const i64 heads = s.heads, dim = s.head_dim_qk;
      const auto theta = static_cast<float>(m_.rope_theta);
      b.compute = [=](const ExecCtx& e) {
        launch_rope(e.pool->ptr(x), m, heads, dim, heads * dim, nullptr, theta, e.stream);
      };
      return;
    }
    case ComputeKind::kAttention:
    case ComputeKind::kSparseAttention: {
      const bool sparse = c.kind == ComputeKind::kSparseAttention;
      const i64 kvh = s.kv_shared ? 1 : std::max<i64>(1, s.kv_heads);
      if (s.head_dim_qk > 768 || s.head_dim_v > 768) fail("op '{}': head dims above 768 are not supported", op.name);
      const i64 qrows = s.batch * s.q_tokens, krows = s.batch * s.kv_tokens;
      const int q = pool.request("g.q", bf(qrows * s.heads * s.head_dim_qk));
      const int kk = weight(fmt::format("g.k.{}", krows * kvh * s.head_dim_qk), krows, kvh * s.head_dim_qk, 0,
                            kvh * s.head_dim_qk, {}, 1.0f);
      const int v = s.kv_shared ? kk
                                : weight(fmt::format("g.v.{}", krows * kvh * s.head_dim_v), krows, kvh * s.head_dim_v,
                                         0, kvh * s.head_dim_v, {}, 1.0f);
      const int out = pool.request("g.o", bf(qrows * s.heads * s.head_dim_v));
      const int idx = sparse ? pool.request("g.topk", qrows * s.topk * 4) : -1;
      AttentionArgs a;
      a.q_row_stride = s.heads * s.head_dim_qk;
      a.k_row_stride = kvh * s.head_dim_qk;
      a.v_row_stride = s.kv_shared ? s.head_dim_qk : kvh * s.head_dim_v;
      a.out_row_stride = s.heads * s.head_dim_v;
      a.batch = s.batch;
      a.q_tokens = s.q_tokens;
      a.kv_tokens = s.kv_tokens;
      a.kv_batch_rows = s.kv_tokens;
      a.heads = s.heads;
      a.kv_heads = kvh;
      a.head_dim_qk = s.head_dim_qk;
      a.head_dim_v = s.head_dim_v;
      a.q_start = s.q_start;
      a.q_stride = s.q_stride;
      a.kv_start = s.kv_start;
      a.kv_stride = s.kv_stride;
      a.causal = s.causal;
      a.scale = 1.0f / std::sqrt(static_cast<float>(std::max<i64>(1, s.head_dim_qk)));
      a.keys_per_query = sparse ? s.topk : 0;
      const auto args_of = [=](const BufferPool& buffers) {
        AttentionArgs args = a;
        args.q = buffers.ptr(q);
        args.k = buffers.ptr(kk);
        args.v = buffers.ptr(v);
        args.out = buffers.ptr(out);
        args.key_index = idx >= 0 ? static_cast<const int*>(buffers.ptr(idx)) : nullptr;
        return args;
      };
      bind_attention(b, args_of);
      return;
    }
    case ComputeKind::kIndexerScore: {
      const i64 qrows = s.batch * s.q_tokens;
      const int out = pool.request("g.scores", qrows * s.kv_tokens * 4);
      const auto sh = s;
      cuda_plan::IndexerScoreShape rule_shape;
      rule_shape.fp8 = c.dtype == DType::kFp8;
      rule_shape.queries = s.q_tokens;
      rule_shape.keys = s.kv_tokens;
      rule_shape.heads = s.heads;
      rule_shape.head_dim = s.head_dim_qk;
      rule_shape.compute_capability = options_.compute_capability;
      auto path = cuda_plan::indexer_score_path(rule_shape);
      auto fallback = cuda_plan::fp8_indexer_unsupported_reason(rule_shape);
      if (path == cuda_plan::IndexerScorePath::kFp8Wgmma && !tensor_map_encoder_available()) {
        // Without tensor maps the fp8 launcher could only run its reference kernel: far slower than the bf16 ones.
        path = cuda_plan::IndexerScorePath::kBf16;
        fallback = "the driver offers no tensor-map encoder (cuTensorMapEncodeTiled) for the fp8 kernel's copies";
      }
      if (path == cuda_plan::IndexerScorePath::kFp8Wgmma) {
        // As DeepSeek-V3.2 runs it: e4m3 q and k, one fp32 scale per key, fp32 head weights that carry q's
        // per-(token, head) scales (launch_indexer_score_fp8). Scratch fills: random e4m3 in [−1, 1), positive scales
        // and weights in [0.5, 1.5) (BufferPool::Fill), never zeros.
        ++p_.indexer_fp8_ops;
        const int q = pool.request("g.q8", qrows * s.heads * s.head_dim_qk, BufferPool::Fill::kFp8);
        const int kk = pool.request("g.k8", s.batch * s.kv_tokens * s.head_dim_qk, BufferPool::Fill::kFp8);
        const int k_scale = pool.request("g.k8.scale", s.batch * s.kv_tokens * 4, BufferPool::Fill::kScaleFp32);
        const int w = pool.request("g.w32", qrows * s.heads * 4, BufferPool::Fill::kScaleFp32);
        b.compute = [=](const ExecCtx& e) {
          for (i64 req = 0; req < sh.batch; ++req) {
            launch_indexer_score_fp8(
                static_cast<const char*>(e.pool->ptr(q)) + req * sh.q_tokens * sh.heads * sh.head_dim_qk,
                static_cast<const char*>(e.pool->ptr(kk)) + req * sh.kv_tokens * sh.head_dim_qk,
                static_cast<const float*>(e.pool->ptr(k_scale)) + req * sh.kv_tokens,
                static_cast<const float*>(e.pool->ptr(w)) + req * sh.q_tokens * sh.heads,
                static_cast<float*>(e.pool->ptr(out)) + req * sh.q_tokens * sh.kv_tokens, sh.q_tokens, sh.kv_tokens,
                sh.heads, sh.head_dim_qk, sh.q_start, sh.q_stride, sh.causal, e.stream);
          }
        };
        return;
      }
      // bf16 ops, and fp8 ops off the fp8 kernel's GPU or shape (timed as bf16: the reason is kept).
      ++p_.indexer_bf16_ops;
      if (!fallback.empty()) p_.indexer_fp8_fallbacks.push_back(std::move(fallback));
      const int q = pool.request("g.q", bf(qrows * s.heads * s.head_dim_qk));
      const int kk = weight(fmt::format("g.k.{}", s.batch * s.kv_tokens * s.head_dim_qk), s.batch * s.kv_tokens,
                            s.head_dim_qk, 0, s.head_dim_qk, {}, 1.0f);
      const int w = pool.request("g.w", bf(qrows * s.heads));
      b.compute = [=](const ExecCtx& e) {
        for (i64 req = 0; req < sh.batch; ++req) {
          launch_indexer_score(
              static_cast<const char*>(e.pool->ptr(q)) + req * sh.q_tokens * sh.heads * sh.head_dim_qk * 2,
              static_cast<const char*>(e.pool->ptr(kk)) + req * sh.kv_tokens * sh.head_dim_qk * 2,
              static_cast<const char*>(e.pool->ptr(w)) + req * sh.q_tokens * sh.heads * 2,
              static_cast<float*>(e.pool->ptr(out)) + req * sh.q_tokens * sh.kv_tokens, sh.q_tokens, sh.kv_tokens,
              sh.heads, sh.head_dim_qk, sh.q_start, sh.q_stride, sh.causal, e.stream);
        }
      };
      return;
    }
    case ComputeKind::kTopK: {
      const i64 rows = s.causal ? s.q_tokens * s.batch : m;
      const int in = pool.request("g.scores", rows * n * 4);
      const int out = pool.request("g.topk", rows * s.topk * 4);
      const i64 topk = s.topk;
      // Causal rows are the indexer's: only the prefix up to each query's position holds scores.
      const TopkRowLengths lengths = s.causal ? TopkRowLengths{s.q_tokens, s.q_start, s.q_stride} : TopkRowLengths{};
      b.compute = [=](const ExecCtx& e) {
        launch_topk(static_cast<const float*>(e.pool->ptr(in)), static_cast<int*>(e.pool->ptr(out)), rows, n, topk,
                    lengths, e.stream);
      };
      return;
    }
    case ComputeKind::kMoeRoute: {
      if (s.topk > 32)
        fail("op '{}': top-{} routing is above the backend's limit of 32 experts per token", op.name, s.topk);
      const int logits = pool.request("g.y", bf(m * n));
      const int ids = pool.request("g.ids", m * s.topk * 4);
      const int wts = pool.request("g.wts", m * s.topk * 4);
      const bool sigmoid = m_.moe && m_.moe->scoring == RouterScoring::kSigmoid;
      const i64 topk = s.topk;
      b.compute = [=](const ExecCtx& e) {
        launch_moe_route(e.pool->ptr(logits), static_cast<int*>(e.pool->ptr(ids)),
                         static_cast<float*>(e.pool->ptr(wts)), m, n, topk, sigmoid, e.stream);
      };
      return;
    }
    case ComputeKind::kMoeUnpermute: {
      if (s.out_rows > 0) {
        // Rows per token vary (the all-to-all MoE's sums): the combine kernel through a map of `slots` entries per
        // token, the m rows spread evenly over the tokens in order, -1 past each token's rows.
        const i64 tokens = s.out_rows, slots = std::max<i64>(1, (m + tokens - 1) / tokens);
        std::vector<int> map(static_cast<std::size_t>(tokens * slots), -1);
        for (i64 t = 0; t < tokens; ++t) {
          const i64 first = t * m / tokens, last = (t + 1) * m / tokens;
          for (i64 r = first; r < last; ++r) map[static_cast<std::size_t>(t * slots + r - first)] = static_cast<int>(r);
        }
        const int rows = pool.request("g.y", bf(m * n));
        const int wts = pool.request("g.wts", tokens * slots * 4);
        const int out = pool.request("g.a", bf(tokens * n));
        const int row_map = pool.ints(fmt::format("g.combine.{}.{}", m, tokens), std::move(map));
        b.compute = [=](const ExecCtx& e) {
          launch_moe_combine(e.pool->ptr(rows), static_cast<const int*>(e.pool->ptr(row_map)),
                             static_cast<const float*>(e.pool->ptr(wts)), e.pool->ptr(out), tokens, slots, n, e.stream);
        };
        return;
      }
      const i64 topk = std::max<i64>(1, s.topk);
      const i64 tokens = m / topk;
      const int rows = pool.request("g.y", bf(m * n));
      const int wts = pool.request("g.wts", m * 4);
      const int out = pool.request("g.a", bf(tokens * n));
      b.compute = [=](const ExecCtx& e) {
        launch_moe_unpermute(e.pool->ptr(rows), static_cast<const float*>(e.pool->ptr(wts)), e.pool->ptr(out), tokens,
                             topk, n, e.stream);
      };
      return;
    }
    case ComputeKind::kActivation: {
      const int gu = pool.request("g.y", bf(m * 2 * n));
      const int out = pool.request("g.a", bf(m * n));
      b.compute = [=](const ExecCtx& e) { launch_silu_mul(e.pool->ptr(gu), e.pool->ptr(out), m, n, e.stream); };
      return;
    }
    case ComputeKind::kResidualAdd: {
      const int y = pool.request("g.a", bf(m * n));
      const int x = pool.request("g.y", bf(m * n));
      b.compute = [=](const ExecCtx& e) { launch_add(e.pool->ptr(y), e.pool->ptr(x), m * n, e.stream); };
      return;
    }
  }
  fail("op '{}' of rank {} has a compute kind the CUDA backend cannot run", op.name, rank_);
}

}  // namespace paratwin::cuda::binding
