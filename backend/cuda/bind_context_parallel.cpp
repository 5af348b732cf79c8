// Binder::bind_ring and Binder::bind_ulysses: context-parallel attention with its real data flow (binder.hpp).
#include "backend/cuda/binder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda::binding {

// Ring pass-KV: block `step` is the KV (rows of [K heads | V heads], in its owner's local row order) this rank
// holds at that step: its own at step 0, then what the ring brought. Each step's attention on (query run, owner run)
// writes a partial output with its log-sum-exp; the step's merge folds them into the running output, and the last
// merge writes the bf16 attention output. One buffer per step (not two alternating ones): the schedule lets the
// receive of step s+1 run before the attention of step s ends, so a reused buffer would be overwritten in use.
bool Binder::bind_ring(const Op& op, BoundOp& b, const std::string& role, const Runs& runs) {
  const int mb = op.micro_batch;
  const int layer = op.layer;
  const int cp = s_.meta.config.attn_cp_size;
  const AttentionHeads h = attention_heads();
  const i64 d = h.head_dim, heads = h.heads, kv_heads = h.kv_heads, qkv_row = h.qkv_row, kv_row = h.kv_row;
  const i64 rows = runs.rows();
  const int me = layout_.coords(rank_).attn_cp_rank;
  const auto& group = layout_.group_of(GroupFamily::kAttnCp, rank_).ranks;
  const auto owner_runs = [&](int step) {
    const int owner = ((me - step) % cp + cp) % cp;
    return runs_by_micro_batch(s_, layout_, group[static_cast<std::size_t>(owner)]).at(mb);
  };
  i64 block_rows = 0;  // the largest block any step holds
  for (int step = 0; step < cp; ++step) block_rows = std::max(block_rows, owner_runs(step).rows());
  const auto block = [&](int step) {
    return step == 0 ? act("kv_local", mb, bf(block_rows * kv_row))
                     : act(fmt::format("ring_kv{}", step), mb, bf(block_rows * kv_row));
  };
  const auto number_after = [&](const char* prefix) { return std::stoi(role.substr(std::string_view(prefix).size())); };
  const int running_out = p_.pool.request(fmt::format("L{}.mb{}.ring_out", layer, mb), rows * heads * d * 4);
  const int running_lse = p_.pool.request(fmt::format("L{}.mb{}.ring_lse", layer, mb), rows * heads * 4);
  const auto slot_buffers = [&](int step, const std::string& pair, i64 q_rows) {
    return std::make_pair(
        p_.pool.request(fmt::format("L{}.mb{}.ring_part{}.{}", layer, mb, step, pair), q_rows * heads * d * 4),
        p_.pool.request(fmt::format("L{}.mb{}.ring_lse{}.{}", layer, mb, step, pair), q_rows * heads * 4));
  };

  if (role.starts_with("attn.ring_send")) {
    bind_comm(op, b, block(number_after("attn.ring_send")), -1);
    return true;
  }
  if (role.starts_with("attn.ring_recv")) {
    const int next = block(number_after("attn.ring_recv") + 1);
    bind_comm(op, b, next, next);
    return true;
  }
  if (role.starts_with("attn.ring_attention")) {
    // "attn.ring_attention<step>.<query run><owner run>": runs are single digits (a rank holds at most two).
    const auto dot = role.find('.', std::string_view("attn.ring_attention").size());
    const int step = number_after("attn.ring_attention");
    const auto pair = role.substr(dot + 1);
    PARATWIN_ASSERT(pair.size() == 2, "ring op name '{}'", op.name);
    const auto qi = static_cast<std::size_t>(pair[0] - '0');
    const auto ki = static_cast<std::size_t>(pair[1] - '0');
    const auto& shape = std::get<ComputeOp>(op.body).shape;
    const auto owner = owner_runs(step);
    PARATWIN_ASSERT(qi < runs.runs.size() && ki < owner.runs.size(), "ring op '{}' names a missing run", op.name);
    const i64 q_offset = run_row_offset(runs, qi);
    const i64 kv_offset = run_row_offset(owner, ki);
    const i64 q_rows = runs.runs[qi].count * runs.batch;
    const auto [part, part_lse] = slot_buffers(step, pair, q_rows);
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    const int kv = block(step);
    const AttentionArgs a = dense_attention_args(shape, h, owner.runs[ki].count);
    const auto args_of = [=](const BufferPool& buffers) {
      AttentionArgs args = a;
      args.q = static_cast<const char*>(buffers.ptr(qkv)) + q_offset * qkv_row * 2;
      args.k = static_cast<const char*>(buffers.ptr(kv)) + kv_offset * kv_row * 2;
      args.v = static_cast<const char*>(args.k) + kv_heads * d * 2;
      args.out_f32 = static_cast<float*>(buffers.ptr(part));
      args.lse = static_cast<float*>(buffers.ptr(part_lse));
      return args;
    };
    bind_attention(b, args_of);
    return true;
  }
  if (role.starts_with("attn.ring_merge")) {
    const int step = number_after("attn.ring_merge");
    struct Slot {
      int out, lse;
      i64 row_offset, rows;
      bool first;
    };
    auto& started = ring_started_[{layer, mb}];
    started.resize(runs.runs.size(), false);
    std::vector<Slot> slots;
    bool last_merge = true;
    const auto attention_prefix = fmt::format("attn.ring_attention{}.", step);
    bool after_me = false;
    for (const auto& other : ops_) {
      if (other.layer != layer || other.micro_batch != mb) continue;
      const auto other_role = role_of(other);
      if (&other == &op) {
        after_me = true;
        continue;
      }
      if (after_me && other_role.starts_with("attn.ring_merge")) last_merge = false;
      if (!other_role.starts_with(attention_prefix)) continue;
      const auto pair = other_role.substr(attention_prefix.size());
      const auto qi = static_cast<std::size_t>(pair[0] - '0');
      const i64 q_rows = runs.runs[qi].count * runs.batch;
      const auto [part, part_lse] = slot_buffers(step, pair, q_rows);
      slots.push_back({part, part_lse, run_row_offset(runs, qi) * heads, q_rows * heads, !started[qi]});
      started[qi] = true;
    }
    const int out = act("attn", mb, bf(rows * heads * d));
    const i64 total = rows * heads * d;
    b.compute = [=](const ExecCtx& e) {
      auto* run_out = static_cast<float*>(e.pool->ptr(running_out));
      auto* run_lse = static_cast<float*>(e.pool->ptr(running_lse));
      for (const auto& slot : slots) {
        launch_attention_merge(run_out + slot.row_offset * d, run_lse + slot.row_offset,
                               static_cast<const float*>(e.pool->ptr(slot.out)),
                               static_cast<const float*>(e.pool->ptr(slot.lse)), slot.rows, d, slot.first, e.stream);
      }
      if (last_merge) launch_to_bf16(run_out, e.pool->ptr(out), total, e.stream);
    };
    return true;
  }
  return false;
}

// Ulysses: an all-to-all over ATTN_CP turns this rank's tokens × all heads into all tokens × its peer's head slice.
// Send chunk j holds, per local row, peer j's [q heads | k heads | v heads] (E elements); received chunk j holds peer
// j's rows in its local order. Attention runs in position order over the whole chunk (a per-layer KV cache of this
// rank's head slice keeps earlier PP chunks), and the output goes back the same way. "pack" (after RoPE) and
// "unpack" (before the output projection) are the layout changes around the two all-to-alls.
bool Binder::bind_ulysses(const Op& op, BoundOp& b, const std::string& role, const Runs& runs) {
  const int mb = op.micro_batch;
  const int layer = op.layer;
  const int cp = s_.meta.config.attn_cp_size;
  const AttentionHeads h = attention_heads();
  const i64 d = h.head_dim, heads = h.heads, kv_heads = h.kv_heads, qkv_row = h.qkv_row;
  const i64 rows = runs.rows();
  if (heads % cp != 0)
    fail("op '{}': Ulysses needs the {} heads of a rank divisible by attn_cp {}", op.name, heads, cp);
  const i64 q_heads_per_peer = heads / cp;
  const i64 kv_heads_per_peer = std::max<i64>(1, kv_heads / cp);
  const i64 E = (q_heads_per_peer + 2 * kv_heads_per_peer) * d;  // elements per token in the input all-to-all
  const i64 out_width = q_heads_per_peer * d;
  std::vector<i64> first_kv_head;  // per peer: the KV head of its first query head (GQA groups)
  for (i64 peer = 0; peer < cp; ++peer) first_kv_head.push_back((peer * q_heads_per_peer) / (heads / kv_heads));
  const auto& group = layout_.group_of(GroupFamily::kAttnCp, rank_).ranks;
  std::vector<Runs> peer_runs;
  std::vector<i64> peer_offset;  // first row of peer j's chunk in the received buffers
  i64 received = 0;
  for (const int peer : group) {
    peer_runs.push_back(runs_by_micro_batch(s_, layout_, peer).at(mb));
    peer_offset.push_back(received);
    received += peer_runs.back().rows();
  }
  const i64 batch = runs.batch;
  const i64 context_end = runs.context_end;
  i64 chunk = 0;  // tokens of one request in this micro-batch, over the whole CP group
  for (const auto& pr : peer_runs) {
    for (const auto& r : pr.runs) chunk += r.count;
  }
  const i64 chunk_start = context_end - chunk;
  const int send = act("u_send", mb, bf(cp * rows * E));
  const int recv = act("u_recv", mb, bf(received * E));
  const int out_send = act("u_out_send", mb, bf(received * out_width));
  const int out_recv = act("u_out_recv", mb, bf(cp * rows * out_width));

  if (role == "pack") {
    const int qkv = act("qkv", mb, bf(rows * qkv_row));
    b.compute = [=](const ExecCtx& e) {
      const auto* src = static_cast<const char*>(e.pool->ptr(qkv));
      auto* dst = static_cast<char*>(e.pool->ptr(send));
      for (i64 j = 0; j < cp; ++j) {
        char* chunk_dst = dst + j * rows * E * 2;
        const i64 kv_first = first_kv_head[static_cast<std::size_t>(j)];
        const std::array<std::pair<i64, i64>, 3> slices = {
            {{j * q_heads_per_peer * d, q_heads_per_peer * d},
             {(heads + kv_first) * d, kv_heads_per_peer * d},
             {(heads + kv_heads + kv_first) * d, kv_heads_per_peer * d}}};
        i64 dst_col = 0;
        for (const auto& [src_col, width] : slices) {
          if (rows > 0) {
            PARATWIN_CUDA_CHECK(cudaMemcpy2DAsync(chunk_dst + dst_col * 2, static_cast<std::size_t>(E * 2),
                                                  src + src_col * 2, static_cast<std::size_t>(qkv_row * 2),
                                                  static_cast<std::size_t>(width * 2), static_cast<std::size_t>(rows),
                                                  cudaMemcpyDeviceToDevice, e.stream));
          }
          dst_col += width;
        }
      }
    };
    return true;
  }
  if (role == "attn.ulysses_qkv_all_to_all") {
    bind_comm(op, b, send, recv);
    return true;
  }
  if (role == "attn.ulysses_out_all_to_all") {
    bind_comm(op, b, out_send, out_recv);
    return true;
  }
  if (role == "unpack") {
    const int attn = act("attn", mb, bf(rows * heads * d));
    b.compute = [=](const ExecCtx& e) {
      if (rows == 0) return;
      for (i64 j = 0; j < cp; ++j) {
        PARATWIN_CUDA_CHECK(cudaMemcpy2DAsync(
            static_cast<char*>(e.pool->ptr(attn)) + j * out_width * 2, static_cast<std::size_t>(heads * d * 2),
            static_cast<const char*>(e.pool->ptr(out_recv)) + j * rows * out_width * 2,
            static_cast<std::size_t>(out_width * 2), static_cast<std::size_t>(out_width * 2),
            static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, e.stream));
      }
    };
    return true;
  }
  if (role != "attn.attention") return false;
  const auto& shape = std::get<ComputeOp>(op.body).shape;
  PARATWIN_ASSERT(shape.q_tokens == chunk && shape.q_start == chunk_start, "Ulysses attention '{}' shape", op.name);
  // Received rows → position order (request-major), and back for the output.
  std::vector<int> to_positions(static_cast<std::size_t>(batch * chunk), -1);
  std::vector<int> to_peers(static_cast<std::size_t>(received), -1);
  for (std::size_t j = 0; j < peer_runs.size(); ++j) {
    peer_runs[j].for_each_row([&](i64 row, i64 req, i64 pos) {
      const i64 seq_row = req * chunk + (pos - chunk_start);
      to_positions[static_cast<std::size_t>(seq_row)] = static_cast<int>(peer_offset[j] + row);
      to_peers[static_cast<std::size_t>(peer_offset[j] + row)] = static_cast<int>(seq_row);
    });
  }
  const int seq = act("u_seq", mb, bf(batch * chunk * E));
  const int seq_out = act("u_seq_out", mb, bf(batch * chunk * out_width));
  const i64 kv_width = 2 * kv_heads_per_peer * d;
  const int cache = p_.pool.request(fmt::format("L{}.u_kv_cache", layer), bf(batch * cache_rows_ * kv_width));
  const int to_positions_map = p_.pool.ints(fmt::format("L{}.mb{}.u_to_positions", layer, mb), std::move(to_positions));
  const int to_peers_map = p_.pool.ints(fmt::format("L{}.mb{}.u_to_peers", layer, mb), std::move(to_peers));
  const i64 cache_per_request = cache_rows_;
  AttentionArgs a;
  a.q_row_stride = E;
  a.k_row_stride = kv_width;
  a.v_row_stride = kv_width;
  a.out_row_stride = out_width;
  a.batch = batch;
  a.q_tokens = chunk;
  a.kv_tokens = context_end;
  a.kv_batch_rows = cache_per_request;
  a.heads = q_heads_per_peer;
  a.kv_heads = kv_heads_per_peer;
  a.head_dim_qk = d;
  a.head_dim_v = d;
  a.q_start = chunk_start;
  a.causal = shape.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto args_of = [=](const BufferPool& buffers) {
    AttentionArgs args = a;
    args.q = buffers.ptr(seq);
    args.k = buffers.ptr(cache);
    args.v = static_cast<const char*>(buffers.ptr(cache)) + kv_heads_per_peer * d * 2;
    args.out = buffers.ptr(seq_out);
    return args;
  };
  p_.attention_calls.push_back(args_of);  // as bind_attention registers it; run between the op's gathers below
  b.compute = [=](const ExecCtx& e) {
    launch_gather_rows(e.pool->ptr(recv), e.pool->ptr(seq), batch * chunk, E * 2,
                       static_cast<const int*>(e.pool->ptr(to_positions_map)), e.stream);
    auto* cache_base = static_cast<char*>(e.pool->ptr(cache));
    const auto* seq_base = static_cast<const char*>(e.pool->ptr(seq));
    for (i64 req = 0; req < batch && chunk > 0; ++req) {
      PARATWIN_CUDA_CHECK(cudaMemcpy2DAsync(
          cache_base + (req * cache_per_request + chunk_start) * kv_width * 2, static_cast<std::size_t>(kv_width * 2),
          seq_base + (req * chunk * E + q_heads_per_peer * d) * 2, static_cast<std::size_t>(E * 2),
          static_cast<std::size_t>(kv_width * 2), static_cast<std::size_t>(chunk), cudaMemcpyDeviceToDevice, e.stream));
    }
    run_attention(e, args_of(*e.pool));
    launch_gather_rows(e.pool->ptr(seq_out), e.pool->ptr(out_send), received, out_width * 2,
                       static_cast<const int*>(e.pool->ptr(to_peers_map)), e.stream);
  };
  return true;
}

}  // namespace paratwin::cuda::binding
