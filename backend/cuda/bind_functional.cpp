// Binder::bind_functional: dense GQA/MHA layers with their real data flow (binder.hpp).
#include "backend/cuda/binder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda::binding {

bool Binder::bind_functional(const Op& op, BoundOp& b) {
  const auto role = role_of(op);
  const int mb = op.micro_batch;
  const auto runs_it = runs_.find(mb);
  if (runs_it == runs_.end()) return false;
  const Runs& runs = runs_it->second;
  const auto& c = s_.meta.config;
  const auto& coords = layout_.coords(rank_);
  const int attn_tp = c.attn_tp_size();
  const int cp = c.attn_cp_size;
  const i64 H = m_.hidden_size;
  const AttentionHeads h = attention_heads();
  const i64 d = h.head_dim, heads = h.heads, kv_heads = h.kv_heads, qkv_row = h.qkv_row, kv_row = h.kv_row;
  const i64 ffn = m_.intermediate_size / attn_tp;
  const i64 vocab_local = (m_.vocab_size + attn_tp - 1) / attn_tp;
  const i64 rows = runs.rows();
  const int tp_rank = coords.attn_tp_rank;
  const int layer = op.layer;
  const std::string L = fmt::format("L{}.", layer);
  const float eps = 1e-5f;
  auto& pool = p_.pool;
  const auto compute_shape = [&]() -> const ComputeShape* {
    const auto* cop = std::get_if<ComputeOp>(&op.body);
    return cop != nullptr ? &cop->shape : nullptr;
  };
  const auto* shape = compute_shape();
  // The shard every CP rank pads to before gathering (bytes of the gather / row bytes).
  const auto shard_rows = [&](i64 row_bytes) -> i64 {
    const auto* cl = std::get_if<CollectiveOp>(&op.body);
    return cl != nullptr ? cl->bytes / row_bytes : rows;
  };
  // Residual stream of this micro-batch: local rows (at least the gather shard).
  const int x = act("x", mb, bf(rows * H));
  const auto positions = [&]() {
    std::vector<int> pos(static_cast<std::size_t>(rows));
    runs.for_each_row([&](i64 row, i64, i64 p) { pos[static_cast<std::size_t>(row)] = static_cast<int>(p); });
    return pos;
  };
  const auto cache_rows = [&]() {
    std::vector<int> out(static_cast<std::size_t>(rows));
    runs.for_each_row(
        [&](i64 row, i64 req, i64 p) { out[static_cast<std::size_t>(row)] = static_cast<int>(req * cache_rows_ + p); });
    return out;
  };
  const float w_scale_h = std::sqrt(3.0f / static_cast<float>(H));

  if (role == "embed" && shape != nullptr) {
    const int table = weight("embed", m_.vocab_size, H, 0, H, {}, 1.0f);
    std::vector<int> ids(static_cast<std::size_t>(rows));
    runs.for_each_row(
        [&](i64 row, i64 req, i64 p) { ids[static_cast<std::size_t>(row)] = token_id(seed_, req, p, m_.vocab_size); });
    const int map = pool.ints(fmt::format("mb{}.token_ids", mb), std::move(ids));
    b.compute = [=](const ExecCtx& e) {
      launch_gather_rows(e.pool->ptr(table), e.pool->ptr(x), rows, H * 2, static_cast<const int*>(e.pool->ptr(map)),
                         e.stream);
    };
    return true;
  }
  if (role == "pp_recv" || role == "pp_send") {
    bind_comm(op, b, x, x);
    return true;
  }
  if (layer < 0 && !role.starts_with("head.")) return false;
  if (role.starts_with("moe.")) return bind_moe(op, b, role, runs, x);
  if (role == "attn.input_norm" || role == "mlp.norm") {
    const int w = weight(L + role, 1, H, 0, H, {}, 0.1f, 1.0f);
    const int xn = act("xn", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(x), e.pool->ptr(xn), e.pool->ptr(w), rows, H, 1, H, nullptr, eps, e.stream);
    };
    return true;
  }
  if (role == "attn.add_norm" || role == "mlp.add_norm") {
    // The residual add the norm absorbed (models/builders ResidualStream): the MLP's norm takes the attention output
    // ("o"); the attention's input norm the previous layer's MLP output ("down") or MoE output (moe_update).
    int update = -1;
    if (role == "mlp.add_norm") {
      update = act("o", mb, bf(rows * H));
    } else if (m_.is_moe_layer(layer - 1)) {
      const auto moe = moe_update(layer - 1, mb, runs);
      if (!moe) return false;
      update = *moe;
    } else {
      update = act("down", mb, bf(rows * H));
    }
    const int w = weight(L + (role == "mlp.add_norm" ? "mlp.norm" : "attn.input_norm"), 1, H, 0, H, {}, 0.1f, 1.0f);
    const int xn = act("xn", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) {
      launch_add_rmsnorm(e.pool->ptr(x), e.pool->ptr(update), e.pool->ptr(xn), e.pool->ptr(w), rows, H, eps, e.stream);
    };
    return true;
  }
  if (role == "attn.qkv_proj") {
    // Full W_qkv [H × (Hq + 2·KV)·d]: query heads, then key heads, then value heads; this rank's columns.
    const i64 full_heads = m_.num_attention_heads, full_kv = m_.num_kv_heads;
    const i64 kv_first = m_.num_kv_heads >= attn_tp ? tp_rank * kv_heads : tp_rank * full_kv / attn_tp;
    const i64 full_cols = (full_heads + 2 * full_kv) * d;
    const auto map =
        range_map({{tp_rank * heads * d, (tp_rank + 1) * heads * d},
                   {(full_heads + kv_first) * d, (full_heads + kv_first + kv_heads) * d},
                   {(full_heads + full_kv + kv_first) * d, (full_heads + full_kv + kv_first + kv_heads) * d}});
    const int w = weight(fmt::format("{}attn.qkv_proj@{}", L, tp_rank), H, qkv_row, 0, full_cols, map, w_scale_h);
    const int xn = act("xn", mb, bf(rows * H));
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(xn), e.pool->ptr(w), e.pool->ptr(qkv), rows, qkv_row, H, false);
    };
    return true;
  }
  if (role == "attn.qk_norm") {
    const int w = weight(L + role, 1, d, 0, d, {}, 0.1f, 1.0f);
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    const i64 inner = heads + kv_heads;
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(qkv), e.pool->ptr(qkv), e.pool->ptr(w), rows * inner, d, inner, qkv_row, nullptr, eps,
                     e.stream);
    };
    return true;
  }
  if (s_.meta.cp_algorithm == CpAlgorithm::kUlysses && cp > 1 &&
      (role == "attn.rope" || role.starts_with("attn.ulysses") || role == "attn.attention")) {
    if (role == "attn.rope") {
      const int qkv = act("qkv", mb, bf(rows * qkv_row));
      const int pos = pool.ints(fmt::format("mb{}.positions", mb), positions());
      const auto theta = static_cast<float>(m_.rope_theta);
      b.compute = [=](const ExecCtx& e) {
        launch_rope(e.pool->ptr(qkv), rows, heads + kv_heads, d, qkv_row, static_cast<const int*>(e.pool->ptr(pos)),
                    theta, e.stream);
      };
      // The all-to-all's send buffer is packed right after RoPE, on the compute stream (see bind_ulysses).
      BoundOp pack;
      if (!bind_ulysses(op, pack, "pack", runs)) return false;
      const auto rope = b.compute;
      b.compute = [rope, pack = pack.compute](const ExecCtx& e) {
        rope(e);
        pack(e);
      };
      return true;
    }
    return bind_ulysses(op, b, role, runs);
  }
  if (s_.meta.cp_algorithm == CpAlgorithm::kRing && cp > 1 && role.starts_with("attn.ring_")) {
    return bind_ring(op, b, role, runs);
  }
  if (role == "attn.rope") {
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    const int pos = pool.ints(fmt::format("mb{}.positions", mb), positions());
    const bool gathered = cp > 1;
    const int dst = gathered ? act("kv_local", mb, bf(rows * kv_row))
                             : pool.request(L + "kv_cache", bf(runs.batch * cache_rows_ * kv_row));
    const int dst_rows = gathered ? pool.ints(fmt::format("mb{}.identity", mb),
                                              [&] {
                                                std::vector<int> v(static_cast<std::size_t>(rows));
                                                for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>(i);
                                                return v;
                                              }())
                                  : pool.ints(fmt::format("mb{}.cache_rows", mb), cache_rows());
    const auto theta = static_cast<float>(m_.rope_theta);
    b.compute = [=](const ExecCtx& e) {
      launch_rope(e.pool->ptr(qkv), rows, heads + kv_heads, d, qkv_row, static_cast<const int*>(e.pool->ptr(pos)),
                  theta, e.stream);
      launch_scatter_kv(e.pool->ptr(qkv), e.pool->ptr(dst), rows, heads, kv_heads, d,
                        static_cast<const int*>(e.pool->ptr(dst_rows)), e.stream);
    };
    return true;
  }
  if (role == "attn.kv_all_gather") {
    const i64 shard = shard_rows(bf(kv_row));
    const int send = act("kv_local", mb, bf(shard * kv_row));
    const int recv = act("kv_gathered", mb, bf(cp * shard * kv_row));
    bind_comm(op, b, send, recv);
    return true;
  }
  if (role == "attn.kv_reorder") {
    // Gathered shards [cp][shard rows] → cache rows of this micro-batch's chunk, per request.
    const auto& group = layout_.group_of(GroupFamily::kAttnCp, rank_).ranks;
    i64 shard = 0;
    std::map<std::pair<i64, i64>, int> source;  // (request, position) -> gathered row
    for (std::size_t pos = 0; pos < group.size(); ++pos) {
      const auto peer_runs = runs_by_micro_batch(s_, layout_, group[pos]);
      const auto it = peer_runs.find(mb);
      if (it == peer_runs.end()) return false;
      shard = std::max(shard, it->second.rows());
    }
    for (std::size_t pos = 0; pos < group.size(); ++pos) {
      const auto peer_runs = runs_by_micro_batch(s_, layout_, group[pos]);
      const auto& pr = peer_runs.at(mb);
      pr.for_each_row([&](i64 row, i64 req, i64 p) {
        source[{req, p}] = static_cast<int>(static_cast<i64>(pos) * shard + row);
      });
    }
    // The gather's shard (padded) is what the all-gather op moved; recompute from its op if present.
    for (const auto& other : ops_) {
      const auto* cl = std::get_if<CollectiveOp>(&other.body);
      if (cl != nullptr && other.layer == layer && other.micro_batch == mb && role_of(other) == "attn.kv_all_gather") {
        const i64 moved = cl->bytes / bf(kv_row);
        if (moved != shard) {
          source.clear();
          for (std::size_t pos = 0; pos < group.size(); ++pos) {
            const auto peer_runs = runs_by_micro_batch(s_, layout_, group[pos]);
            peer_runs.at(mb).for_each_row([&](i64 row, i64 req, i64 p) {
              source[{req, p}] = static_cast<int>(static_cast<i64>(pos) * moved + row);
            });
          }
          shard = moved;
        }
      }
    }
    const i64 chunk = shape->m / runs.batch;
    const i64 chunk_start = runs.context_end - chunk;
    const int gathered = act("kv_gathered", mb, bf(cp * shard * kv_row));
    const int cache = pool.request(L + "kv_cache", bf(runs.batch * cache_rows_ * kv_row));
    std::vector<int> maps;
    for (i64 req = 0; req < runs.batch; ++req) {
      for (i64 p = chunk_start; p < runs.context_end; ++p) {
        const auto it = source.find({req, p});
        if (it == source.end()) return false;
        maps.push_back(it->second);
      }
    }
    const int map = pool.ints(fmt::format("{}mb{}.kv_reorder_map", L, mb), std::move(maps));
    const i64 batch = runs.batch, cache_per_req = cache_rows_;
    b.compute = [=](const ExecCtx& e) {
      for (i64 req = 0; req < batch; ++req) {
        auto* dst = static_cast<char*>(e.pool->ptr(cache)) + (req * cache_per_req + chunk_start) * kv_row * 2;
        launch_gather_rows(e.pool->ptr(gathered), dst, chunk, kv_row * 2,
                           static_cast<const int*>(e.pool->ptr(map)) + req * chunk, e.stream);
      }
    };
    return true;
  }
  if (role.starts_with("attn.attention") && shape != nullptr) {
    // Query rows of this run start after the earlier runs of the layer.
    i64 offset = 0;
    for (const auto& other : ops_) {
      if (&other == &op) break;
      const auto* oc = std::get_if<ComputeOp>(&other.body);
      if (oc != nullptr && oc->kind == ComputeKind::kAttention && other.layer == layer && other.micro_batch == mb) {
        offset += oc->shape.q_tokens * oc->shape.batch;
      }
    }
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    const int cache = pool.request(L + "kv_cache", bf(runs.batch * cache_rows_ * kv_row));
    const int out = act("attn", mb, bf(rows * heads * d));
    const AttentionArgs a = dense_attention_args(*shape, h, cache_rows_);
    const auto args_of = [=](const BufferPool& buffers) {
      AttentionArgs args = a;
      args.q = static_cast<const char*>(buffers.ptr(qkv)) + offset * qkv_row * 2;
      args.k = buffers.ptr(cache);
      args.v = static_cast<const char*>(buffers.ptr(cache)) + kv_heads * d * 2;
      args.out = static_cast<char*>(buffers.ptr(out)) + offset * heads * d * 2;
      return args;
    };
    bind_attention(b, args_of);
    return true;
  }
  if (role == "attn.o_proj") {
    const int w = weight(fmt::format("{}attn.o_proj@{}", L, tp_rank), heads * d, H, tp_rank * heads * d, H, {},
                         std::sqrt(3.0f / static_cast<float>(m_.num_attention_heads * d)));
    const int in = act("attn", mb, bf(rows * heads * d));
    const int o = act("o", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(in), e.pool->ptr(w), e.pool->ptr(o), rows, H, heads * d, false);
    };
    if (s_.meta.cp_algorithm == CpAlgorithm::kUlysses && cp > 1) {
      // Ulysses returns head slices per peer: put them back into the head-major rows first.
      BoundOp unpack;
      if (!bind_ulysses(op, unpack, "unpack", runs)) return false;
      b.compute = [unpack = unpack.compute, proj = b.compute](const ExecCtx& e) {
        unpack(e);
        proj(e);
      };
    }
    return true;
  }
  if (role == "attn.o_all_reduce") {
    bind_comm(op, b, act("o", mb, bf(rows * H)), -1);
    return true;
  }
  if (role == "attn.residual_add" || role == "mlp.residual_add") {
    const int y = act(role == "attn.residual_add" ? "o" : "down", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) { launch_add(e.pool->ptr(x), e.pool->ptr(y), rows * H, e.stream); };
    return true;
  }
  if (role == "mlp.gate_up_proj") {
    const i64 full = m_.intermediate_size;
    const auto map =
        range_map({{tp_rank * ffn, (tp_rank + 1) * ffn}, {full + tp_rank * ffn, full + (tp_rank + 1) * ffn}});
    const int w = weight(fmt::format("{}mlp.gate_up_proj@{}", L, tp_rank), H, 2 * ffn, 0, 2 * full, map, w_scale_h);
    const int xn = act("xn", mb, bf(rows * H));
    const int gu = act("gate_up", mb, bf(rows * 2 * ffn));
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(xn), e.pool->ptr(w), e.pool->ptr(gu), rows, 2 * ffn, H, false);
    };
    return true;
  }
  if (role == "mlp.act") {
    const int gu = act("gate_up", mb, bf(rows * 2 * ffn));
    const int a = act("mlp_act", mb, bf(rows * ffn));
    b.compute = [=](const ExecCtx& e) { launch_silu_mul(e.pool->ptr(gu), e.pool->ptr(a), rows, ffn, e.stream); };
    return true;
  }
  if (role == "mlp.down_proj") {
    const int w = weight(fmt::format("{}mlp.down_proj@{}", L, tp_rank), ffn, H, tp_rank * ffn, H, {},
                         std::sqrt(3.0f / static_cast<float>(m_.intermediate_size)));
    const int a = act("mlp_act", mb, bf(rows * ffn));
    const int y = act("down", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) { gemm(e, e.pool->ptr(a), e.pool->ptr(w), e.pool->ptr(y), rows, H, ffn, false); };
    return true;
  }
  if (role == "mlp.all_reduce") {
    bind_comm(op, b, act("down", mb, bf(rows * H)), -1);
    return true;
  }
  if (role == "head.hidden_all_gather") {
    const i64 shard = shard_rows(bf(H));
    pool.grow(x, bf(shard * H));
    bind_comm(op, b, x, act("head_gathered", mb, bf(cp * shard * H)));
    return true;
  }
  if (role == "head.final_norm" && shape != nullptr) {
    // The last token of each request of this chunk: in the gathered shards (CP) or in the local rows.
    const i64 last = runs.context_end - 1;
    std::vector<int> map;
    int src = x;
    if (cp > 1) {
      const auto& group = layout_.group_of(GroupFamily::kAttnCp, rank_).ranks;
      i64 shard = 0;
      for (const auto& other : ops_) {
        const auto* cl = std::get_if<CollectiveOp>(&other.body);
        if (cl != nullptr && other.micro_batch == mb && role_of(other) == "head.hidden_all_gather")
          shard = cl->bytes / bf(H);
      }
      if (shard == 0) return false;
      src = act("head_gathered", mb, bf(cp * shard * H));
      for (i64 req = 0; req < runs.batch; ++req) {
        int found = -1;
        for (std::size_t pos = 0; pos < group.size(); ++pos) {
          const auto peer_runs = runs_by_micro_batch(s_, layout_, group[pos]);
          peer_runs.at(mb).for_each_row([&](i64 row, i64 r, i64 p) {
            if (r == req && p == last) found = static_cast<int>(static_cast<i64>(pos) * shard + row);
          });
        }
        if (found < 0) return false;
        map.push_back(found);
      }
    } else {
      for (i64 req = 0; req < runs.batch; ++req) {
        int found = -1;
        runs.for_each_row([&](i64 row, i64 r, i64 p) {
          if (r == req && p == last) found = static_cast<int>(row);
        });
        if (found < 0) return false;
        map.push_back(found);
      }
    }
    const i64 n_rows = static_cast<i64>(map.size());
    if (n_rows != shape->m) return false;
    const int row_map = pool.ints(fmt::format("mb{}.last_rows", mb), std::move(map));
    const int w = weight("final_norm", 1, H, 0, H, {}, 0.1f, 1.0f);
    const int out = act("head_xn", mb, bf(n_rows * H));
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(src), e.pool->ptr(out), e.pool->ptr(w), n_rows, H, 1, H,
                     static_cast<const int*>(e.pool->ptr(row_map)), eps, e.stream);
    };
    return true;
  }
  if (role == "head.lm_head" && shape != nullptr) {
    const i64 n_rows = shape->m;
    std::vector<int> map;
    for (i64 col = tp_rank * vocab_local; col < (tp_rank + 1) * vocab_local; ++col) {
      map.push_back(static_cast<int>(std::min(col, m_.vocab_size - 1)));
    }
    const int w =
        weight(fmt::format("lm_head@{}", tp_rank), H, vocab_local, 0, m_.vocab_size, std::move(map), w_scale_h);
    const int in = act("head_xn", mb, bf(n_rows * H));
    const int out = act("logits_local", mb, n_rows * vocab_local * 4);
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(in), e.pool->ptr(w), e.pool->ptr(out), n_rows, vocab_local, H, true);
    };
    if (attn_tp == 1) {
      p_.outputs.logits_buffer = out;
      p_.outputs.logits_cols = vocab_local;
    }
    return true;
  }
  if (role == "head.logits_all_gather") {
    const auto* cl = std::get_if<CollectiveOp>(&op.body);
    const int send = act("logits_local", mb, cl->bytes);
    const int recv = act("logits", mb, cl->bytes * attn_tp);
    bind_comm(op, b, send, recv);
    p_.outputs.logits_buffer = recv;
    p_.outputs.logits_cols = vocab_local;
    return true;
  }
  return false;
}

}  // namespace paratwin::cuda::binding
