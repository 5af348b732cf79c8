#pragma once
/// What the op binder's parts share (backend/cuda only): the Binder, which binds one rank's ops, and the helpers its
/// parts call. Binder's members are spread by the ops they bind:
/// - op_binder.cpp: the dispatch (functional data flow or generic), communication ops, bind_rank;
/// - bind_functional.cpp: dense GQA/MHA layers with their real data flow (embedding to logits, all-gather CP, TP, PP);
/// - bind_context_parallel.cpp: ring (pass-KV) and Ulysses attention between RoPE and the output projection;
/// - bind_moe.cpp: MoE layers under per-token routing (dispatch, experts, combine) and the fp8 GEMMs;
/// - bind_generic.cpp: every other op, on scratch buffers of its real shape (timing only).
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/grouped_gemm.hpp"
#include "backend/cuda/op_binder.hpp"
#include "models/model_spec.hpp"
#include "models/schedule.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::cuda::binding {

using i64 = std::int64_t;

/// Row-major Y[m × n] = X[m × k] · W[k × n] on the context's cuBLAS handle (bf16 in; bf16 or fp32 out; fp32
/// accumulation).
void gemm(const ExecCtx& ctx, const void* x, const void* w, void* y, i64 m, i64 n, i64 k, bool fp32_out);
/// The expert GEMMs' launch by `method` (grouped_gemm.hpp): operand pointers resolved once when the pool is allocated,
/// and for the Hopper kernel its device tables (the pool's grouped_kernel_tables, `kernel_tables`); a launch whose
/// tables the pool could not make runs cuBLAS streams.
struct BoundGroupedGemm {
  std::function<void(const ExecCtx&)> launch;
  int kernel_tables = -1;
};
BoundGroupedGemm grouped_gemm(BufferPool& pool, GroupedGemm gemm, const GroupedGemm::Operands& operands,
                              cuda_plan::MoeGemmMethod method);
/// A grouped GEMM that is not the MoE experts' (MLA's per-head absorb GEMMs): one strided batched cuBLAS call where its
/// groups are equal and equally spaced, else cuBLAS streams (GroupedGemmMethod::kStridedBatched).
std::function<void(const ExecCtx&)> batched_grouped_gemm(BufferPool& pool, GroupedGemm gemm,
                                                         const GroupedGemm::Operands& operands);
/// One attention call through the dispatcher (cuDNN fused, cuBLAS unfused or the sparse kernels), counted by path.
void run_attention(const ExecCtx& e, const AttentionArgs& args);

/// A rank's share of a dense GQA/MHA layer's attention under attention TP: its query and KV heads, the head dim, and
/// the elements of one token's QKV row [q heads | k heads | v heads] and KV row [k heads | v heads].
struct AttentionHeads {
  i64 heads = 0, kv_heads = 0, head_dim = 0;
  i64 qkv_row = 0, kv_row = 0;
};
/// The AttentionArgs (all but the pointers, set at launch) of an attention op of `shape` on `h`'s heads: queries in QKV
/// rows, keys and values in KV rows with `kv_batch_rows` rows between requests, bf16 output rows of h.heads heads.
AttentionArgs dense_attention_args(const ComputeShape& shape, const AttentionHeads& h, i64 kv_batch_rows);
/// A tensor's seed: `seed` hashed with its name, so that every rank draws the same full tensor.
std::uint64_t name_seed(std::uint64_t seed, const std::string& name);
/// Token id of (request, position): the same on every layout.
int token_id(std::uint64_t seed, i64 request, i64 position, i64 vocab);
/// The role of an op: its name without the "L3." / "mb1." prefix.
std::string role_of(const Op& op);
/// A grouped GEMM of MoE experts, which runs the method --moe-gemm picks (cuda_plan::decide_moe_gemm): roles
/// "moe.*", and the bench sweep's expert-shaped GEMMs ("bench.moe.*"), so that a calibration fitted on the sweep times
/// the method the models' experts run.
bool runs_as_experts(const Op& op);

// The query runs of one rank in one micro-batch, read from its attention ops of one layer.
struct Runs {
  struct Run {
    i64 start = 0, count = 0, stride = 1;
  };
  std::vector<Run> runs;
  i64 batch = 1;
  i64 context_end = 0;
  [[nodiscard]] i64 rows() const {
    i64 n = 0;
    for (const auto& r : runs) n += r.count;
    return n * batch;
  }
  // Local rows in order: run-major, then request, then index in the run.
  void for_each_row(const std::function<void(i64 row, i64 request, i64 position)>& f) const {
    i64 row = 0;
    for (const auto& r : runs) {
      for (i64 b = 0; b < batch; ++b) {
        for (i64 i = 0; i < r.count; ++i) f(row++, b, r.start + i * r.stride);
      }
    }
  }
};

/// The query runs of `rank` in each micro-batch, from the same token split the builder used (models/builders).
std::map<int, Runs> runs_by_micro_batch(const Schedule& s, const RankLayout& layout, int rank);

class Binder {
 public:
  Binder(const Schedule& s, const ModelSpec& m, int rank, std::uint64_t seed, const BindOptions& options,
         RankProgram& p)
      : s_(s),
        m_(m),
        rank_(rank),
        seed_(seed),
        options_(options),
        p_(p),
        layout_(s.meta.config),
        ops_(s.ranks[static_cast<std::size_t>(rank)]) {}

  void bind();

 private:
  // ---- helpers
  i64 bf(i64 elems) const { return elems * 2; }
  int act(const std::string& name, int mb, i64 bytes) {
    return p_.pool.request(fmt::format("mb{}.{}", mb, name), bytes);
  }
  int weight(const std::string& name, i64 rows, i64 cols, i64 row_offset, i64 full_cols, std::vector<int> col_map,
             float scale, float bias = 0, bool fp32 = false) {
    BufferPool::Random r;
    r.rows = rows;
    r.cols = cols;
    r.row_offset = row_offset;
    r.full_cols = full_cols;
    if (!col_map.empty()) r.col_map = p_.pool.ints(name + ".colmap", std::move(col_map));
    r.seed = name_seed(seed_, name.substr(0, name.find('@')));
    r.scale = scale;
    r.bias = bias;
    r.fp32 = fp32;
    return p_.pool.random(name, r);
  }
  static std::vector<int> range_map(const std::vector<std::pair<i64, i64>>& ranges) {
    std::vector<int> map;
    for (const auto& [begin, end] : ranges) {
      for (i64 c = begin; c < end; ++c) map.push_back(static_cast<int>(c));
    }
    return map;
  }
  AttentionHeads attention_heads() const {
    const int attn_tp = s_.meta.config.attn_tp_size();
    AttentionHeads h;
    h.heads = m_.num_attention_heads / attn_tp;
    h.kv_heads = std::max<i64>(1, m_.num_kv_heads / attn_tp);
    h.head_dim = m_.head_dim;
    h.qkv_row = (h.heads + 2 * h.kv_heads) * h.head_dim;
    h.kv_row = 2 * h.kv_heads * h.head_dim;
    return h;
  }
  bool functional_model() const {
    const auto& meta = s_.meta;
    return !m_.mla && meta.phase == Phase::kPrefill;
  }
  bool bind_functional(const Op& op, BoundOp& b);
  // Ring pass-KV and Ulysses attention (dense GQA/MHA): the ops between RoPE and the output projection.
  bool bind_ring(const Op& op, BoundOp& b, const std::string& role, const Runs& runs);
  bool bind_ulysses(const Op& op, BoundOp& b, const std::string& role, const Runs& runs);
  // Row offset of query run `index` among a rank's local rows (run-major, then request).
  static i64 run_row_offset(const Runs& runs, std::size_t index) {
    i64 offset = 0;
    for (std::size_t i = 0; i < index && i < runs.runs.size(); ++i) offset += runs.runs[i].count * runs.batch;
    return offset;
  }
  // MoE under per-token routing (ScheduleMeta::per_token_routing_seed): the host knows every token's experts, so
  // dispatch/combine layouts, permutations and grouped-GEMM row counts are tables built here.
  struct MoeTables {
    bool a2a = false;
    i64 members = 1, me = 0, per_member = 0, first_expert = 0, local_experts = 0;
    i64 gate_rows = 0;          // rows the gate and router see (local rows; gathered rows in gather mode)
    i64 shard = 0, group = 1;   // gather mode: rows per ATTN_CP member (padded) and members
    std::vector<int> ids;       // [gate_rows × topk] experts of the gate's rows
    std::vector<int> send_map;  // a2a: local row of each dispatched row, grouped by destination
    std::vector<i64> send_per_peer, recv_per_peer;
    i64 recv_rows = 0;
    std::vector<int> recv_ids;     // a2a: [recv_rows × topk] experts of each received token
    std::vector<i64> group_rows;   // per local expert
    std::vector<int> permute_map;  // expert row → source row (received row; gathered row in gather mode)
    std::vector<int> combine_map;  // [(recv_rows | gate_rows) × topk] → expert row, −1 for experts elsewhere
    std::vector<int> back_map;     // a2a: [local rows × members] → combine-received row or −1
  };
  const MoeTables* moe_tables(int layer, int mb, const Runs& runs);
  bool bind_moe(const Op& op, BoundOp& b, const std::string& role, const Runs& runs, int x);
  // Whether MoE layers bind with their real data flow (bind_moe); else they run on scratch buffers, timing only.
  bool moe_functional() const;
  // What a layer's residual add adds to the stream (alone, or fused into the next RMSNorm): the buffer, and what must
  // run first on the compute stream (none: empty).
  // The MoE output of `layer` (the buffer the residual add reads): gather mode the combined (or reduce-scattered)
  // rows; all-to-all the sum of the rows the expert ranks sent back (moe.combine_sum's output). None when MoE layers
  // are not functional.
  std::optional<int> moe_update(int layer, int mb, const Runs& runs);
  void bind_generic(const Op& op, BoundOp& b);
  // An fp8 GEMM (or grouped GEMM: one cuBLASLt call per group's rows) of the timing path, block-scaled as DeepSeek-V3
  // quantises: fp8 weights with 128×128 block scales, activations with 1×128 group scales (the bytes the schedule
  // counts); every tensor and scale seeded random, scales positive.
  // `moe_experts`: a MoE op's experts, launched as --moe-gemm resolves at their shape (decide_fp8_moe_gemm) and
  // counted in RankProgram; other fp8 GEMMs run cuBLASLt.
  std::function<void(const ExecCtx&)> bind_fp8_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n, i64 k,
                                                    int y, bool moe_experts);
  void bind_comm(const Op& op, BoundOp& b, int send, int recv);
  // One attention op: `args_of` resolves its arguments against the allocated pool. Registers the call in
  // RankProgram::attention_calls (the engine runs each distinct one before the first step) and binds `b` to it.
  void bind_attention(BoundOp& b, const std::function<AttentionArgs(const BufferPool&)>& args_of);
  // A bf16 grouped GEMM: the MoE experts' (roles "moe.*") by the method --moe-gemm resolves to at its shape
  // (cuda_plan::decide_moe_gemm), recorded in RankProgram::moe_gemms; any other by batched_grouped_gemm.
  std::function<void(const ExecCtx&)> bind_grouped_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n, i64 k,
                                                        const GroupedGemm::Operands& operands);

  const Schedule& s_;
  const ModelSpec& m_;
  int rank_;
  std::uint64_t seed_;
  BindOptions options_;
  RankProgram& p_;
  RankLayout layout_;
  const std::vector<Op>& ops_;
  std::map<int, Runs> runs_;
  i64 cache_rows_ = 0;                            // KV-cache rows per request
  std::map<std::pair<int, int>, MoeTables> moe_;  // by (layer, micro-batch)
  // Ring CP: query runs whose running output has been started, by (layer, micro-batch) (ops bind in stream order).
  std::map<std::pair<int, int>, std::vector<bool>> ring_started_;
};

}  // namespace paratwin::cuda::binding
