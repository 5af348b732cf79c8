// Binder::moe_tables, bind_moe and bind_fp8_gemm: MoE layers under per-token routing, fp8 GEMMs (binder.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include "backend/cuda/binder.hpp"
#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/fp8_grouped_gemm.hpp"
#include "backend/cuda/kernels.hpp"
#include "models/builders/moe_routing.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda::binding {

const Binder::MoeTables* Binder::moe_tables(int layer, int mb, const Runs& runs) {
  const auto key = std::make_pair(layer, mb);
  if (const auto it = moe_.find(key); it != moe_.end()) return &it->second;
  const auto& moe = *m_.moe;
  const auto seed = *s_.meta.per_token_routing_seed;
  const i64 topk = moe.experts_per_token, experts = moe.num_experts;
  const auto experts_of = [&](i64 request, i64 position) {
    return build::token_experts(experts, topk, seed, layer, request, position);
  };
  // The (request, position) of each local row of `rank` in this micro-batch.
  const auto keys_of = [&](int rank) {
    std::vector<build::TokenKey> keys;
    const auto peer = runs_by_micro_batch(s_, layout_, rank);
    const auto it = peer.find(mb);
    if (it == peer.end()) fail("MoE layer {}: rank {} has no tokens in micro-batch {}", layer, rank, mb);
    it->second.for_each_row([&](i64, i64 req, i64 pos) { keys.push_back({req, pos}); });
    return keys;
  };
  const auto collective = [&](const char* name) -> const CollectiveOp* {
    for (const auto& other : ops_) {
      const auto* cl = std::get_if<CollectiveOp>(&other.body);
      if (cl != nullptr && other.layer == layer && other.micro_batch == mb && role_of(other) == name) return cl;
    }
    return nullptr;
  };
  MoeTables t;
  t.a2a = s_.meta.moe_mode == MoeMode::kAllToAll;
  const i64 rows = runs.rows();
  const i64 H = m_.hidden_size;
  if (t.a2a) {
    const auto& group = layout_.group_of(GroupFamily::kMoeEp, rank_).ranks;
    t.members = static_cast<i64>(group.size());
    t.me = static_cast<i64>(std::find(group.begin(), group.end(), rank_) - group.begin());
    t.per_member = (experts + t.members - 1) / t.members;
    t.first_expert = t.me * t.per_member;
    t.local_experts = std::min(experts, t.first_expert + t.per_member) - t.first_expert;
    const auto M = static_cast<std::size_t>(t.members);
    // Source side: dispatch one copy per (token, destination rank), grouped by destination, in row order.
    const auto mine = keys_of(rank_);
    t.gate_rows = rows;
    std::vector<std::vector<char>> goes(mine.size(), std::vector<char>(M, 0));
    for (std::size_t r = 0; r < mine.size(); ++r) {
      for (const int e : experts_of(mine[r].request, mine[r].position)) {
        t.ids.push_back(e);
        goes[r][static_cast<std::size_t>(e / t.per_member)] = 1;
      }
    }
    t.back_map.assign(mine.size() * M, -1);
    for (std::size_t j = 0; j < M; ++j) {
      i64 n = 0;
      for (std::size_t r = 0; r < mine.size(); ++r) {
        if (!goes[r][j]) continue;
        t.back_map[r * M + j] = static_cast<int>(t.send_map.size());
        t.send_map.push_back(static_cast<int>(r));
        ++n;
      }
      t.send_per_peer.push_back(n);
    }
    // Expert side: the tokens of every member that chose one of this rank's experts, by source, in its row order.
    for (std::size_t p = 0; p < M; ++p) {
      const auto keys = p == static_cast<std::size_t>(t.me) ? mine : keys_of(group[p]);
      i64 n = 0;
      for (const auto& k : keys) {
        const auto ids = experts_of(k.request, k.position);
        if (std::none_of(ids.begin(), ids.end(), [&](int e) { return e / t.per_member == t.me; })) continue;
        t.recv_ids.insert(t.recv_ids.end(), ids.begin(), ids.end());
        ++n;
      }
      t.recv_per_peer.push_back(n);
      t.recv_rows += n;
    }
    t.combine_map.assign(static_cast<std::size_t>(t.recv_rows * topk), -1);
    for (i64 g = 0; g < t.local_experts; ++g) {
      i64 n = 0;
      for (i64 r = 0; r < t.recv_rows; ++r) {
        for (i64 k = 0; k < topk; ++k) {
          if (t.recv_ids[static_cast<std::size_t>(r * topk + k)] != t.first_expert + g) continue;
          t.combine_map[static_cast<std::size_t>(r * topk + k)] = static_cast<int>(t.permute_map.size());
          t.permute_map.push_back(static_cast<int>(r));
          ++n;
        }
      }
      t.group_rows.push_back(n);
    }
    // The schedule's dispatch must move exactly these rows (bf16 rows of H; per-token routing counts them exactly).
    const auto* dispatch = collective("moe.dispatch_all_to_all");
    if (dispatch == nullptr || dispatch->send_bytes.size() != M || dispatch->recv_bytes.size() != M)
      fail("MoE layer {} of rank {}: no dispatch all-to-all over {} ranks", layer, rank_, M);
    for (std::size_t j = 0; j < M; ++j) {
      if (dispatch->send_bytes[j] != t.send_per_peer[j] * 2 * H ||
          dispatch->recv_bytes[j] != t.recv_per_peer[j] * 2 * H)
        fail(
            "MoE layer {} of rank {}: the dispatch to/from peer {} moves {}/{} bytes, the per-token routing {}/{} rows",
            layer, rank_, j, dispatch->send_bytes[j], dispatch->recv_bytes[j], t.send_per_peer[j], t.recv_per_peer[j]);
    }
  } else {
    // Gather mode: every ATTN_CP member's rows, padded to the gather's shard, in group order; all experts here.
    const auto* gather = collective("moe.token_all_gather");
    const auto& group = layout_.group_of(GroupFamily::kAttnCp, rank_).ranks;
    t.group = gather != nullptr ? static_cast<i64>(group.size()) : 1;
    t.shard = gather != nullptr ? gather->bytes / (2 * H) : rows;
    t.gate_rows = t.group * t.shard;
    t.local_experts = experts;
    for (i64 p = 0; p < t.group; ++p) {
      const auto keys = t.group == 1 ? keys_of(rank_) : keys_of(group[static_cast<std::size_t>(p)]);
      if (static_cast<i64>(keys.size()) > t.shard)
        fail("MoE layer {}: rank {} holds {} rows, more than the gather's shard of {}", layer,
             group[static_cast<std::size_t>(p)], keys.size(), t.shard);
      for (i64 r = 0; r < t.shard; ++r) {
        const auto k = r < static_cast<i64>(keys.size()) ? keys[static_cast<std::size_t>(r)]
                                                         : build::TokenKey{-1, p * t.shard + r};
        const auto ids = experts_of(k.request, k.position);
        t.ids.insert(t.ids.end(), ids.begin(), ids.end());
      }
    }
    t.combine_map.assign(t.ids.size(), -1);
    for (i64 e = 0; e < experts; ++e) {
      i64 n = 0;
      for (i64 r = 0; r < t.gate_rows; ++r) {
        for (i64 k = 0; k < topk; ++k) {
          if (t.ids[static_cast<std::size_t>(r * topk + k)] != e) continue;
          t.combine_map[static_cast<std::size_t>(r * topk + k)] = static_cast<int>(t.permute_map.size());
          t.permute_map.push_back(static_cast<int>(r));
          ++n;
        }
      }
      t.group_rows.push_back(n);
    }
  }
  return &moe_.emplace(key, std::move(t)).first->second;
}

bool Binder::moe_functional() const {
  if (!m_.moe || !s_.meta.per_token_routing_seed) return false;  // synthetic routing: scratch data, timing only
  const auto& moe = *m_.moe;
  const auto& c = s_.meta.config;
  const bool a2a = s_.meta.moe_mode == MoeMode::kAllToAll;
  return m_.weight_dtype == DType::kBf16 && moe.scoring == RouterScoring::kSoftmax && moe.num_shared_experts == 0 &&
         moe.routed_scaling_factor == 1.0 && c.attn_tp_size() == 1 && (!a2a || c.moe_tp_size() == 1);
}

std::optional<int> Binder::moe_update(int layer, int mb, const Runs& runs) {
  if (!moe_functional()) return std::nullopt;
  const i64 H = m_.hidden_size;
  if (s_.meta.moe_mode == MoeMode::kAllToAll) return act("moe_out", mb, bf(runs.rows() * H));  // moe.combine_sum's
  const auto* t = moe_tables(layer, mb, runs);
  return t->group > 1 ? act("moe_scattered", mb, bf(t->shard * H)) : act("moe_combined", mb, bf(t->gate_rows * H));
}

bool Binder::bind_moe(const Op& op, BoundOp& b, const std::string& role, const Runs& runs, int x) {
  if (!moe_functional()) return false;
  const auto& moe = *m_.moe;
  const auto& c = s_.meta.config;
  const bool a2a = s_.meta.moe_mode == MoeMode::kAllToAll;
  const int layer = op.layer, mb = op.micro_batch;
  const i64 H = m_.hidden_size, E = moe.num_experts, topk = moe.experts_per_token;
  const i64 rows = runs.rows();
  const int moe_tp = a2a ? 1 : c.moe_tp_size();
  const int tp_rank = a2a ? 0 : layout_.coords(rank_).moe_tp_rank;
  const i64 full_ffn = moe.expert_intermediate_size;
  const i64 ffn = full_ffn / moe_tp;
  const std::string L = fmt::format("L{}.", layer);
  const std::string T = fmt::format("{}mb{}.", L, mb);  // names of this layer's tables
  const bool renormalize = moe.norm_topk_prob;
  auto& pool = p_.pool;
  const auto* t = moe_tables(layer, mb, runs);
  const auto* shape = [&]() -> const ComputeShape* {
    const auto* cop = std::get_if<ComputeOp>(&op.body);
    return cop != nullptr ? &cop->shape : nullptr;
  }();
  const auto expect = [&](bool ok, const char* what) {
    if (!ok) fail("op '{}' of rank {}: {} does not match the per-token routing", op.name, rank_, what);
  };
  i64 expert_rows = 0;
  for (const auto r : t->group_rows) expert_rows += r;
  const i64 send_rows = static_cast<i64>(t->send_map.size());
  const i64 out_rows = a2a ? t->recv_rows : t->gate_rows;  // rows the unpermute writes
  const int xn = act("xn", mb, bf(rows * H));
  const int gate_w = weight(L + "moe.gate", H, E, 0, E, {}, std::sqrt(3.0f / static_cast<float>(H)));
  const int logits = act("moe_logits", mb, t->gate_rows * E * 4);
  const int wts = act("moe_wts", mb, t->gate_rows * topk * 4);
  const int gathered = t->group > 1 ? act("moe_gathered", mb, bf(t->gate_rows * H)) : xn;
  const int expert_in = a2a ? act("moe_recv", mb, bf(t->recv_rows * H)) : gathered;
  const int moe_rows = act("moe_rows", mb, bf(expert_rows * H));
  const int gu = act("moe_gate_up", mb, bf(expert_rows * 2 * ffn));
  const int moe_act = act("moe_act", mb, bf(expert_rows * ffn));
  const int down = act("moe_down", mb, bf(expert_rows * H));
  const int comb = act("moe_combined", mb, bf(out_rows * H));
  const auto experts_weights = [&](const char* which, i64 w_rows, i64 w_cols, i64 row_offset, i64 full_cols,
                                   const std::vector<std::pair<i64, i64>>& cols, float scale) {
    std::vector<int> ids;
    for (i64 g = 0; g < t->local_experts; ++g) {
      ids.push_back(weight(fmt::format("{}moe.expert{}.{}@{}", L, t->first_expert + g, which, tp_rank), w_rows, w_cols,
                           row_offset, full_cols, range_map(cols), scale));
    }
    return ids;
  };
  // The experts' GEMMs over the expert-ordered rows of `in` into `out`.
  const auto grouped = [&](int in, const std::vector<int>& w, int out, i64 n, i64 k) {
    GroupedGemm::Operands operands{in, out, {}};
    for (const int id : w) operands.weights.push_back({id, 0});
    return bind_grouped_gemm(op, t->group_rows, n, k, operands);
  };

  if (role == "moe.norm") {
    const int w = weight(L + role, 1, H, 0, H, {}, 0.1f, 1.0f);
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(x), e.pool->ptr(xn), e.pool->ptr(w), rows, H, 1, H, nullptr, 1e-5f, e.stream);
    };
    return true;
  }
  if (role == "moe.add_norm") {  // the attention's residual add fused into this norm (same weight as moe.norm)
    const int w = weight(L + "moe.norm", 1, H, 0, H, {}, 0.1f, 1.0f);
    const int o = act("o", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) {
      launch_add_rmsnorm(e.pool->ptr(x), e.pool->ptr(o), e.pool->ptr(xn), e.pool->ptr(w), rows, H, 1e-5f, e.stream);
    };
    return true;
  }
  if (role == "moe.token_all_gather") {
    bind_comm(op, b, xn, gathered);
    return true;
  }
  if (role == "moe.gate") {
    expect(shape != nullptr && shape->m == t->gate_rows && shape->n == E, "the gate's rows");
    const i64 m = t->gate_rows;
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(gathered), e.pool->ptr(gate_w), e.pool->ptr(logits), m, E, H, true);
    };
    return true;
  }
  if (role == "moe.route") {
    // The router's weights of the token's experts (chosen by the per-token routing); then the rows the next step
    // reads: the dispatch layout (all-to-all) or the expert order (gather mode, whose grouped GEMM reads sorted rows).
    const int ids = pool.ints(T + "moe_ids", t->ids);
    const i64 m = t->gate_rows;
    const int out = a2a ? act("moe_send", mb, bf(send_rows * H)) : moe_rows;
    const i64 out_rows_n = a2a ? send_rows : expert_rows;
    const int map = pool.ints(T + (a2a ? "moe_send_map" : "moe_permute_map"), a2a ? t->send_map : t->permute_map);
    b.compute = [=](const ExecCtx& e) {
      launch_moe_route_fixed(static_cast<const float*>(e.pool->ptr(logits)), static_cast<const int*>(e.pool->ptr(ids)),
                             static_cast<float*>(e.pool->ptr(wts)), m, E, topk, renormalize, e.stream);
      launch_gather_rows(e.pool->ptr(gathered), e.pool->ptr(out), out_rows_n, H * 2,
                         static_cast<const int*>(e.pool->ptr(map)), e.stream);
    };
    return true;
  }
  if (role == "moe.dispatch_all_to_all") {
    bind_comm(op, b, act("moe_send", mb, bf(send_rows * H)), expert_in);
    return true;
  }
  if (role == "moe.permute") {
    // DeepEP sends each token's expert ids and weights along with it; the schedule does not count those bytes, so the
    // expert side recomputes the weights from the received rows (the same bf16 rows, the same gate).
    expect(shape != nullptr && shape->m == expert_rows, "the permuted rows");
    const int recv_ids = pool.ints(T + "moe_recv_ids", t->recv_ids);
    const int map = pool.ints(T + "moe_permute_map", t->permute_map);
    const int recv_logits = act("moe_recv_logits", mb, t->recv_rows * E * 4);
    const int recv_wts = act("moe_recv_wts", mb, t->recv_rows * topk * 4);
    const i64 r = t->recv_rows;
    b.compute = [=](const ExecCtx& e) {
      gemm(e, e.pool->ptr(expert_in), e.pool->ptr(gate_w), e.pool->ptr(recv_logits), r, E, H, true);
      launch_moe_route_fixed(static_cast<const float*>(e.pool->ptr(recv_logits)),
                             static_cast<const int*>(e.pool->ptr(recv_ids)), static_cast<float*>(e.pool->ptr(recv_wts)),
                             r, E, topk, renormalize, e.stream);
      launch_gather_rows(e.pool->ptr(expert_in), e.pool->ptr(moe_rows), expert_rows, H * 2,
                         static_cast<const int*>(e.pool->ptr(map)), e.stream);
    };
    return true;
  }
  if (role == "moe.gate_up_gemm") {
    expect(shape != nullptr && shape->group_rows == t->group_rows && shape->n == 2 * ffn && shape->k == H,
           "the grouped GEMM's rows per expert");
    const auto w = experts_weights(
        "gate_up", H, 2 * ffn, 0, 2 * full_ffn,
        {{tp_rank * ffn, (tp_rank + 1) * ffn}, {full_ffn + tp_rank * ffn, full_ffn + (tp_rank + 1) * ffn}},
        std::sqrt(3.0f / static_cast<float>(H)));
    b.compute = grouped(moe_rows, w, gu, 2 * ffn, H);
    return true;
  }
  if (role == "moe.act") {
    b.compute = [=](const ExecCtx& e) {
      launch_silu_mul(e.pool->ptr(gu), e.pool->ptr(moe_act), expert_rows, ffn, e.stream);
    };
    return true;
  }
  if (role == "moe.down_gemm") {
    expect(shape != nullptr && shape->group_rows == t->group_rows && shape->n == H && shape->k == ffn,
           "the grouped GEMM's rows per expert");
    const auto w =
        experts_weights("down", ffn, H, tp_rank * ffn, H, {}, std::sqrt(3.0f / static_cast<float>(full_ffn)));
    b.compute = grouped(moe_act, w, down, H, ffn);
    return true;
  }
  if (role == "moe.unpermute") {
    // Per token (received token, or gathered row): the weighted sum of its experts' rows held here.
    expect(shape != nullptr && shape->m == expert_rows, "the un-permuted rows");
    const int map = pool.ints(T + "moe_combine_map", t->combine_map);
    const int w = a2a ? act("moe_recv_wts", mb, t->recv_rows * topk * 4) : wts;
    b.compute = [=](const ExecCtx& e) {
      launch_moe_combine(e.pool->ptr(down), static_cast<const int*>(e.pool->ptr(map)),
                         static_cast<const float*>(e.pool->ptr(w)), e.pool->ptr(comb), out_rows, topk, H, e.stream);
    };
    return true;
  }
  if (role == "moe.combine_all_to_all") {
    bind_comm(op, b, comb, act("moe_back", mb, bf(send_rows * H)));
    return true;
  }
  if (role == "moe.combine_sum") {
    // Each local token: the sum of the rows the ranks holding its experts sent back (weighted there), read through
    // back_map (a slot per member, -1 where the token sent nothing).
    expect(shape != nullptr && shape->m == send_rows && shape->out_rows == rows, "the returned rows");
    const int back = act("moe_back", mb, bf(send_rows * H));
    const int map = pool.ints(T + "moe_back_map", t->back_map);
    const int sum = act("moe_out", mb, bf(rows * H));
    const i64 members = t->members;
    b.compute = [=](const ExecCtx& e) {
      launch_moe_combine(e.pool->ptr(back), static_cast<const int*>(e.pool->ptr(map)), nullptr, e.pool->ptr(sum), rows,
                         members, H, e.stream);
    };
    return true;
  }
  if (role == "moe.token_reduce_scatter") {
    bind_comm(op, b, comb, act("moe_scattered", mb, bf(t->shard * H)));
    return true;
  }
  if (role == "moe.residual_add") {
    const auto update = moe_update(layer, mb, runs);
    if (!update) return false;
    const int u = *update;
    b.compute = [=](const ExecCtx& e) { launch_add(e.pool->ptr(x), e.pool->ptr(u), rows * H, e.stream); };
    return true;
  }
  return false;  // moe.tp_all_reduce, shared experts: excluded above
}

std::function<void(const ExecCtx&)> Binder::bind_fp8_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n,
                                                          i64 k, int y, bool moe_experts) {
  auto& pool = p_.pool;
  if (k % kFp8ScaleBlock != 0) {
    fail(
        "op '{}': fp8 GEMM with k = {}: block scaling (1x128 activation groups, 128x128 weight blocks, as the fp8 "
        "weights are quantised) needs k to be a multiple of 128",
        op.name, k);
  }
  const auto gemm = std::make_shared<Fp8GroupedGemm>(group_rows, n, k);
  const auto experts = static_cast<i64>(group_rows.size());
  if (experts > 1) p_.fp8_side_streams = true;
  const i64 rows = gemm->rows();
  // Activations are scratch shared by every fp8 GEMM of the rank (the largest one's size). Each group's rows are
  // consecutive in X and Y, but a GEMM runs on its rows rounded up to 4 (fp8_gemm.hpp), reading and writing up to 3
  // rows past them: the next groups' (which Fp8GroupedGemm orders before those groups' own GEMMs, also where the
  // groups run concurrently on the side streams), or for the last group 3 spare rows at the end. Each group has its
  // own block of scales, in padded rows.
  const int x = pool.request("g.a8", (rows + 3) * k, BufferPool::Fill::kFp8);
  pool.grow(y, bf((rows + 3) * n));
  const int x_scale = pool.request("g.a8.scale", gemm->activation_scale_count() * 4, BufferPool::Fill::kScaleFp32);
  const i64 w_scales = gemm->weight_scale_count();
  BufferPool::Random w_init;
  w_init.rows = experts * n;
  w_init.cols = k;
  w_init.seed = name_seed(seed_, "w:" + op.name);
  w_init.fp8 = true;
  const int w = pool.random("w:" + op.name, w_init);
  BufferPool::Random s_init;
  s_init.rows = experts;
  s_init.cols = w_scales;
  s_init.full_cols = w_scales;
  s_init.seed = name_seed(seed_, "w.scale:" + op.name);
  s_init.scale = 0.5f;
  s_init.bias = 1.0f;
  s_init.fp32 = true;
  const int w_scale = pool.random("w.scale:" + op.name, s_init);
  auto method = cuda_plan::MoeGemmMethod::kCublasStreams;
  if (moe_experts) {
    cuda_plan::MoeGemmShape shape;
    shape.rows_per_expert = experts == 0 ? 0.0 : static_cast<double>(rows) / static_cast<double>(experts);
    shape.n = n;
    shape.k = k;
    shape.compute_capability = options_.compute_capability;
    auto decision = cuda_plan::decide_fp8_moe_gemm(options_.moe_gemm, shape);
    method = decision.method;
    if (!decision.fallback.empty()) p_.fp8_moe_fallbacks.push_back(std::move(decision.fallback));
    ++(method == cuda_plan::MoeGemmMethod::kHopperKernel ? p_.fp8_moe_kernel_gemms : p_.fp8_moe_gemms);
  }
  // The kernel's tile schedule in device memory (none where every expert is empty: nothing to run).
  const int kernel_table = method == cuda_plan::MoeGemmMethod::kHopperKernel && !gemm->kernel_table().empty()
                               ? pool.ints("fp8k:" + op.name, gemm->kernel_table())
                               : -1;
  return [=](const ExecCtx& e) {
    Fp8GroupedGemm::Launch launch{e.blas_lt, e.lt_workspace, e.lt_workspace_bytes, e.stream, e.gemm_streams};
    if (kernel_table >= 0) launch.device_kernel_table = static_cast<const int*>(e.pool->ptr(kernel_table));
    Fp8GroupedGemm::Operands o;
    o.x = e.pool->ptr(x);
    o.x_scale = static_cast<const float*>(e.pool->ptr(x_scale));
    o.w = e.pool->ptr(w);
    o.w_scale = static_cast<const float*>(e.pool->ptr(w_scale));
    o.y = e.pool->ptr(y);
    if (kernel_table >= 0 && gemm->run_kernel(launch, o)) return;
    gemm->run(launch, o);
  };
}

}  // namespace paratwin::cuda::binding
