#include "backend/cuda/op_binder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>

#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/kernels.hpp"
#include "models/builders/moe_routing.hpp"
#include "models/builders/op_emitter.hpp"
#include "models/builders/rank_tokens.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::cuda {

// ---------------------------------------------------------------------------------------------------- BufferPool

BufferPool::~BufferPool() {
  release();
}

int BufferPool::find_or_add(const std::string& name) {
  const auto [it, inserted] = by_name_.try_emplace(name, static_cast<int>(entries_.size()));
  if (inserted) {
    Entry e;
    e.name = name;
    entries_.push_back(std::move(e));
  }
  return it->second;
}

int BufferPool::request(const std::string& name, std::int64_t bytes, Fill fill) {
  const bool is_new = by_name_.count(name) == 0;
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  PARATWIN_ASSERT(is_new || e.fill == fill, "scratch buffer {} requested with two fills", name);
  e.fill = fill;
  e.bytes = std::max(e.bytes, bytes);
  return id;
}

void BufferPool::grow(int id, std::int64_t bytes) {
  auto& e = entries_[static_cast<std::size_t>(id)];
  PARATWIN_ASSERT(!e.is_random || e.bytes >= bytes, "buffer {} of {} bytes is too small for {}", e.name, e.bytes,
                  bytes);
  e.bytes = std::max(e.bytes, bytes);
}

int BufferPool::random(const std::string& name, const Random& init) {
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  const std::int64_t bytes = init.rows * init.cols * (init.fp32 ? 4 : (init.fp8 ? 1 : 2));
  if (e.is_random) {
    PARATWIN_ASSERT(e.bytes == bytes, "random tensor {} requested with two sizes", name);
    return id;
  }
  e.is_random = true;
  e.init = init;
  e.bytes = std::max(e.bytes, bytes);
  return id;
}

int BufferPool::ints(const std::string& name, std::vector<int> values) {
  const int id = find_or_add(name);
  auto& e = entries_[static_cast<std::size_t>(id)];
  if (!e.host_ints.empty()) {
    PARATWIN_ASSERT(e.host_ints == values, "int table {} requested with two contents", name);
    return id;
  }
  e.bytes = std::max(e.bytes, static_cast<std::int64_t>(values.size() * sizeof(int)));
  e.host_ints = std::move(values);
  return id;
}

int BufferPool::pointer_table(std::vector<GroupedGemm::Address> entries) {
  table_addresses_.push_back(std::move(entries));
  return static_cast<int>(table_addresses_.size()) - 1;
}

std::int64_t BufferPool::total_bytes() const {
  std::int64_t total = 0;
  for (const auto& e : entries_) total += (e.bytes + 255) / 256 * 256;
  return total;
}

void BufferPool::allocate(cudaStream_t stream) {
  for (auto& e : entries_) {
    const auto bytes = static_cast<std::size_t>(std::max<std::int64_t>(e.bytes, 16));
    const auto err = cudaMalloc(&e.ptr, bytes);
    if (err != cudaSuccess) {
      fail("cudaMalloc of {} bytes for buffer '{}' failed: {}", bytes, e.name, cudaGetErrorString(err));
    }
    PARATWIN_CUDA_CHECK(cudaMemsetAsync(e.ptr, 0, bytes, stream));
    if (!e.host_ints.empty()) {
      PARATWIN_CUDA_CHECK(
          cudaMemcpyAsync(e.ptr, e.host_ints.data(), e.host_ints.size() * sizeof(int), cudaMemcpyHostToDevice, stream));
    }
  }
  tables_.clear();  // every buffer has its address now
  for (const auto& addresses : table_addresses_) {
    auto& table = tables_.emplace_back();
    for (const auto& a : addresses) table.push_back(static_cast<char*>(ptr(a.buffer)) + a.offset_bytes);
  }
  // Activations and scratch start as seeded random bf16 (or fp8, or positive fp32 scales), never zeros (zeros make
  // GEMMs faster than real data); index tables and seeded tensors are written below.
  std::uint64_t k = 0x5eed;
  for (auto& e : entries_) {
    ++k;
    if (e.is_random || !e.host_ints.empty() || e.bytes < 2) continue;
    switch (e.fill) {
      case Fill::kBf16:
        launch_fill_random(e.ptr, false, 1, e.bytes / 2, 0, nullptr, e.bytes / 2, k, 1.0f, 0.0f, stream);
        break;
      case Fill::kFp8:
        launch_fill_random_fp8(e.ptr, e.bytes, k, 1.0f, stream);
        break;
      case Fill::kScaleFp32:
        launch_fill_random(e.ptr, true, 1, e.bytes / 4, 0, nullptr, e.bytes / 4, k, 0.5f, 1.0f, stream);
        break;
    }
  }
  for (auto& e : entries_) {
    if (!e.is_random) continue;
    const int* map = e.init.col_map >= 0 ? static_cast<const int*>(ptr(e.init.col_map)) : nullptr;
    if (e.init.fp8 && !e.init.fp32) {
      launch_fill_random_fp8(e.ptr, e.init.rows * e.init.cols, e.init.seed, e.init.scale, stream);
      continue;
    }
    launch_fill_random(e.ptr, e.init.fp32, e.init.rows, e.init.cols, e.init.row_offset, map, e.init.full_cols,
                       e.init.seed, e.init.scale, e.init.bias, stream);
  }
  PARATWIN_CUDA_CHECK(cudaGetLastError());
  PARATWIN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (auto& e : entries_) std::vector<int>().swap(e.host_ints);
}

void BufferPool::release() {
  for (auto& e : entries_) {
    if (e.ptr != nullptr) cudaFree(e.ptr);
    e.ptr = nullptr;
  }
}

namespace {

using i64 = std::int64_t;

// Row-major Y[m × n] = X[m × k] · W[k × n] (bf16 in; bf16 or fp32 out; fp32 accumulation). Column-major cuBLAS
// sees Yᵀ = Wᵀ · Xᵀ with no transposes.
void gemm(const ExecCtx& ctx, const void* x, const void* w, void* y, i64 m, i64 n, i64 k, bool fp32_out) {
  if (m == 0 || n == 0) return;
  const float alpha = 1.0f, beta = 0.0f;
  PARATWIN_CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                     static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(n), x, CUDA_R_16BF,
                                     static_cast<int>(k), &beta, y, fp32_out ? CUDA_R_32F : CUDA_R_16BF,
                                     static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}


// The expert GEMMs' launch: concurrent cuBLAS GEMMs on the rank's side streams (kEngineGroupedGemmMethod;
// grouped_gemm.hpp says why not the grouped cuBLAS call or the backend's own kernel), operand pointers resolved once
// when the pool is allocated. The other methods also need device copies of the table (and the kernel its tile
// schedule and tensor maps), which the pool does not make.
static_assert(kEngineGroupedGemmMethod == GroupedGemmMethod::kConcurrent,
              "the binder prepares the host pointer table only: another method needs its device tables here");
std::function<void(const ExecCtx&)> grouped_gemm(BufferPool& pool, GroupedGemm gemm,
                                                 const GroupedGemm::Operands& operands) {
  const int table = pool.pointer_table(gemm.operand_addresses(operands));
  auto plan = std::make_shared<const GroupedGemm>(std::move(gemm));
  return [plan, table](const ExecCtx& e) {
    GroupedGemm::Launch launch;
    launch.blas = e.blas;
    launch.stream = e.stream;
    launch.side = e.gemm_streams;
    launch.host_table = e.pool->pointers(table);
    plan->run(launch, kEngineGroupedGemmMethod);
  };
}

// Dense attention fused (cuDNN) where it computes the call exactly, else on the tensor cores unfused (cuBLAS) when
// the rank has the workspace; index-sparse attention (DSA) on the backend's own kernel. Counts the path taken.
void run_attention(const ExecCtx& e, const AttentionArgs& args) {
  const auto path = dispatch_attention(
      args, {e.cudnn_attention, e.blas, e.attention_workspace, e.attention_workspace_bytes}, e.stream);
  if (e.attention_paths != nullptr) ++(*e.attention_paths)[static_cast<std::size_t>(path)];
}

std::uint64_t name_seed(std::uint64_t seed, const std::string& name) {
  std::uint64_t h = 1469598103934665603ULL ^ seed;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// Token id of (request, position): the same on every layout.
int token_id(std::uint64_t seed, i64 request, i64 position, i64 vocab) {
  std::uint64_t h = seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(request * 1000003 + position);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  return static_cast<int>(h % static_cast<std::uint64_t>(vocab));
}

// The role of an op: its name without the "L3." / "mb1." prefix.
std::string role_of(const Op& op) {
  const auto prefix = build::op_prefix(op.layer, op.micro_batch);
  return op.name.rfind(prefix, 0) == 0 ? op.name.substr(prefix.size()) : op.name;
}

bool starts_with(const std::string& s, const char* p) {
  return s.rfind(p, 0) == 0;
}

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

// The query runs of `rank` in each micro-batch, from the same token split the builder used (models/builders).
std::map<int, Runs> runs_by_micro_batch(const Schedule& s, const RankLayout& layout, int rank) {
  const auto& meta = s.meta;
  ScheduleOptions options;
  options.phase = meta.phase;
  options.prompt_tokens = meta.prompt_tokens;
  options.batch = meta.batch;
  options.cp_algorithm = meta.cp_algorithm;
  options.cp_split = meta.cp_split;
  PARATWIN_ASSERT(meta.micro_batches > 0, "schedule meta without micro-batches");
  const auto chunks = build::micro_batch_chunks(options, meta.micro_batches);
  std::map<int, Runs> out;
  for (std::size_t mb = 0; mb < chunks.size(); ++mb) {
    const auto tokens = build::rank_tokens(meta.config, options, layout.coords(rank), chunks[mb]);
    auto& r = out[static_cast<int>(mb)];
    for (const auto& run : tokens.runs) r.runs.push_back({run.start, run.count, run.stride});
    r.batch = tokens.requests;
    r.context_end = tokens.context_end;
  }
  return out;
}

class Binder {
 public:
  Binder(const Schedule& s, const ModelSpec& m, int rank, std::uint64_t seed, RankProgram& p)
      : s_(s),
        m_(m),
        rank_(rank),
        seed_(seed),
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
  void bind_generic(const Op& op, BoundOp& b);
  // An fp8 GEMM (or grouped GEMM: one cuBLASLt call per group's rows) of the timing path, block-scaled as DeepSeek-V3
  // quantises: fp8 weights with 128×128 block scales, activations with 1×128 group scales (the bytes the schedule
  // counts); every tensor and scale seeded random, scales positive.
  std::function<void(const ExecCtx&)> bind_fp8_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n, i64 k,
                                                    int y);
  void bind_comm(const Op& op, BoundOp& b, int send, int recv);

  const Schedule& s_;
  const ModelSpec& m_;
  int rank_;
  std::uint64_t seed_;
  RankProgram& p_;
  RankLayout layout_;
  const std::vector<Op>& ops_;
  std::map<int, Runs> runs_;
  i64 cache_rows_ = 0;                            // KV-cache rows per request
  std::map<std::pair<int, int>, MoeTables> moe_;  // by (layer, micro-batch)
  // Ring CP: query runs whose running output has been started, by (layer, micro-batch) (ops bind in stream order).
  std::map<std::pair<int, int>, std::vector<bool>> ring_started_;
};

void Binder::bind() {
  runs_ = runs_by_micro_batch(s_, layout_, rank_);
  cache_rows_ = s_.meta.prompt_tokens + (s_.meta.phase == Phase::kDecode ? 1 : 0);
  p_.ops.resize(ops_.size());
  const bool functional = functional_model();
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const auto& op = ops_[i];
    auto& b = p_.ops[i];
    b.functional = functional && bind_functional(op, b);
    if (!b.functional) {
      p_.generic_ops.push_back(op.name);
      bind_generic(op, b);
    }
  }
  p_.outputs.hidden_size = m_.hidden_size;
}

void Binder::bind_comm(const Op& op, BoundOp& b, int send, int recv) {
  if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
    b.call = cuda_plan::translate_collective(*c, op.name);
  } else {
    b.call = cuda_plan::translate_p2p(std::get<P2POp>(op.body), op.name);
  }
  const bool is_recv = b.call.function == cuda_plan::NcclFunction::kRecv;
  if (is_recv) {
    // A receive writes its (only) buffer.
    b.send_buffer = -1;
    b.recv_buffer = recv >= 0 ? recv : send;
    p_.pool.grow(b.recv_buffer, b.call.recv_buffer_bytes);
    return;
  }
  b.send_buffer = send;
  p_.pool.grow(send, b.call.send_buffer_bytes);
  if (b.call.recv_buffer_bytes > 0) {
    PARATWIN_ASSERT(recv >= 0, "op {} needs a receive buffer", op.name);
    b.recv_buffer = recv;
    p_.pool.grow(recv, b.call.recv_buffer_bytes);
  }
}

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
  const i64 d = m_.head_dim;
  const i64 heads = m_.num_attention_heads / attn_tp;
  const i64 kv_heads = std::max<i64>(1, m_.num_kv_heads / attn_tp);
  const i64 qkv_row = (heads + 2 * kv_heads) * d;
  const i64 kv_row = 2 * kv_heads * d;
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
  if (layer < 0 && !starts_with(role, "head.")) return false;
  if (starts_with(role, "moe.")) return bind_moe(op, b, role, runs, x);
  if (role == "attn.input_norm" || role == "mlp.norm") {
    const int w = weight(L + role, 1, H, 0, H, {}, 0.1f, 1.0f);
    const int xn = act("xn", mb, bf(rows * H));
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(x), e.pool->ptr(xn), e.pool->ptr(w), rows, H, 1, H, nullptr, eps, e.stream);
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
      (role == "attn.rope" || starts_with(role, "attn.ulysses") || role == "attn.attention")) {
    if (role == "attn.rope") {
      const int qkv = act("qkv", mb, bf(rows * qkv_row));
      const int pos = pool.ints(fmt::format("mb{}.positions", mb), positions());
      const float theta = 10000.0f;
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
  if (s_.meta.cp_algorithm == CpAlgorithm::kRing && cp > 1 && starts_with(role, "attn.ring_")) {
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
    const float theta = 10000.0f;
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
  if (starts_with(role, "attn.attention") && shape != nullptr) {
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
    AttentionArgs a;
    a.q_row_stride = qkv_row;
    a.k_row_stride = kv_row;
    a.v_row_stride = kv_row;
    a.out_row_stride = heads * d;
    a.batch = shape->batch;
    a.q_tokens = shape->q_tokens;
    a.kv_tokens = shape->kv_tokens;
    a.kv_batch_rows = cache_rows_;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.head_dim_qk = d;
    a.head_dim_v = d;
    a.q_start = shape->q_start;
    a.q_stride = shape->q_stride;
    a.kv_start = shape->kv_start;
    a.kv_stride = shape->kv_stride;
    a.causal = shape->causal;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    b.compute = [=](const ExecCtx& e) {
      AttentionArgs args = a;
      args.q = static_cast<const char*>(e.pool->ptr(qkv)) + offset * qkv_row * 2;
      args.k = e.pool->ptr(cache);
      args.v = static_cast<const char*>(e.pool->ptr(cache)) + kv_heads * d * 2;
      args.out = static_cast<char*>(e.pool->ptr(out)) + offset * heads * d * 2;
      run_attention(e, args);
    };
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

// Ring pass-KV: block `step` is the KV (rows of [K heads | V heads], in its owner's local row order) this rank
// holds at that step: its own at step 0, then what the ring brought. Each step's attention on (query run, owner run)
// writes a partial output with its log-sum-exp; the step's merge folds them into the running output, and the last
// merge writes the bf16 attention output. One buffer per step (not two alternating ones): the schedule lets the
// receive of step s+1 run before the attention of step s ends, so a reused buffer would be overwritten in use.
bool Binder::bind_ring(const Op& op, BoundOp& b, const std::string& role, const Runs& runs) {
  const int mb = op.micro_batch;
  const int layer = op.layer;
  const int attn_tp = s_.meta.config.attn_tp_size();
  const int cp = s_.meta.config.attn_cp_size;
  const i64 d = m_.head_dim;
  const i64 heads = m_.num_attention_heads / attn_tp;
  const i64 kv_heads = std::max<i64>(1, m_.num_kv_heads / attn_tp);
  const i64 qkv_row = (heads + 2 * kv_heads) * d;
  const i64 kv_row = 2 * kv_heads * d;
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

  if (starts_with(role, "attn.ring_send")) {
    bind_comm(op, b, block(number_after("attn.ring_send")), -1);
    return true;
  }
  if (starts_with(role, "attn.ring_recv")) {
    const int next = block(number_after("attn.ring_recv") + 1);
    bind_comm(op, b, next, next);
    return true;
  }
  if (starts_with(role, "attn.ring_attention")) {
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
    AttentionArgs a;
    a.q_row_stride = qkv_row;
    a.k_row_stride = kv_row;
    a.v_row_stride = kv_row;
    a.out_row_stride = heads * d;
    a.batch = shape.batch;
    a.q_tokens = shape.q_tokens;
    a.kv_tokens = shape.kv_tokens;
    a.kv_batch_rows = owner.runs[ki].count;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.head_dim_qk = d;
    a.head_dim_v = d;
    a.q_start = shape.q_start;
    a.q_stride = shape.q_stride;
    a.kv_start = shape.kv_start;
    a.kv_stride = shape.kv_stride;
    a.causal = shape.causal;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    b.compute = [=](const ExecCtx& e) {
      AttentionArgs args = a;
      args.q = static_cast<const char*>(e.pool->ptr(qkv)) + q_offset * qkv_row * 2;
      args.k = static_cast<const char*>(e.pool->ptr(kv)) + kv_offset * kv_row * 2;
      args.v = static_cast<const char*>(args.k) + kv_heads * d * 2;
      args.out_f32 = static_cast<float*>(e.pool->ptr(part));
      args.lse = static_cast<float*>(e.pool->ptr(part_lse));
      run_attention(e, args);
    };
    return true;
  }
  if (starts_with(role, "attn.ring_merge")) {
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
      if (after_me && starts_with(other_role, "attn.ring_merge")) last_merge = false;
      if (!starts_with(other_role, attention_prefix.c_str())) continue;
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
  const int attn_tp = s_.meta.config.attn_tp_size();
  const int cp = s_.meta.config.attn_cp_size;
  const i64 d = m_.head_dim;
  const i64 heads = m_.num_attention_heads / attn_tp;
  const i64 kv_heads = std::max<i64>(1, m_.num_kv_heads / attn_tp);
  const i64 qkv_row = (heads + 2 * kv_heads) * d;
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
    AttentionArgs args = a;
    args.q = seq_base;
    args.k = cache_base;
    args.v = cache_base + kv_heads_per_peer * d * 2;
    args.out = e.pool->ptr(seq_out);
    run_attention(e, args);
    launch_gather_rows(e.pool->ptr(seq_out), e.pool->ptr(out_send), received, out_width * 2,
                       static_cast<const int*>(e.pool->ptr(to_peers_map)), e.stream);
  };
  return true;
}

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

bool Binder::bind_moe(const Op& op, BoundOp& b, const std::string& role, const Runs& runs, int x) {
  if (!m_.moe || !s_.meta.per_token_routing_seed) return false;  // synthetic routing: scratch data, timing only
  const auto& moe = *m_.moe;
  const auto& c = s_.meta.config;
  const bool a2a = s_.meta.moe_mode == MoeMode::kAllToAll;
  if (m_.weight_dtype != DType::kBf16 || moe.scoring != RouterScoring::kSoftmax || moe.num_shared_experts != 0 ||
      moe.routed_scaling_factor != 1.0 || c.attn_tp_size() != 1 || (a2a && c.moe_tp_size() != 1)) {
    return false;
  }
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
    return grouped_gemm(pool, GroupedGemm(t->group_rows, n, k), operands);
  };

  if (role == "moe.norm") {
    const int w = weight(L + role, 1, H, 0, H, {}, 0.1f, 1.0f);
    b.compute = [=](const ExecCtx& e) {
      launch_rmsnorm(e.pool->ptr(x), e.pool->ptr(xn), e.pool->ptr(w), rows, H, 1, H, nullptr, 1e-5f, e.stream);
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
  if (role == "moe.token_reduce_scatter") {
    bind_comm(op, b, comb, act("moe_scattered", mb, bf(t->shard * H)));
    return true;
  }
  if (role == "moe.residual_add") {
    if (a2a) {
      // Each local token: the sum of the rows the ranks holding its experts sent back, then the residual.
      const int back = act("moe_back", mb, bf(send_rows * H));
      const int map = pool.ints(T + "moe_back_map", t->back_map);
      const int sum = act("moe_out", mb, bf(rows * H));
      const i64 members = t->members;
      b.compute = [=](const ExecCtx& e) {
        launch_moe_combine(e.pool->ptr(back), static_cast<const int*>(e.pool->ptr(map)), nullptr, e.pool->ptr(sum),
                           rows, members, H, e.stream);
        launch_add(e.pool->ptr(x), e.pool->ptr(sum), rows * H, e.stream);
      };
      return true;
    }
    const int y = t->group > 1 ? act("moe_scattered", mb, bf(t->shard * H)) : comb;
    b.compute = [=](const ExecCtx& e) { launch_add(e.pool->ptr(x), e.pool->ptr(y), rows * H, e.stream); };
    return true;
  }
  return false;  // moe.tp_all_reduce, shared experts: excluded above
}

std::function<void(const ExecCtx&)> Binder::bind_fp8_gemm(const Op& op, const std::vector<i64>& group_rows, i64 n,
                                                          i64 k, int y) {
  auto& pool = p_.pool;
  if (k % kFp8ScaleBlock != 0) {
    fail("op '{}': fp8 GEMM with k = {}: block scaling (1x128 activation groups, 128x128 weight blocks, as the fp8 "
         "weights are quantised) needs k to be a multiple of 128",
         op.name, k);
  }
  const auto gemm = std::make_shared<Fp8Gemm>(Fp8Scaling::kBlock, n, k);
  const auto experts = static_cast<i64>(group_rows.size());
  i64 rows = 0, scale_rows = 0;
  for (const i64 r : group_rows) {
    rows += r;
    scale_rows += fp8_padded_rows(Fp8Scaling::kBlock, r);
  }
  const i64 k_groups = k / kFp8ScaleBlock;
  const i64 w_scales = fp8_weight_scale_count(Fp8Scaling::kBlock, n, k);
  // Activations are scratch shared by every fp8 GEMM of the rank (the largest one's size). Each group's rows are
  // consecutive in X and Y, but a GEMM runs on its rows rounded up to 4 (fp8_gemm.hpp), reading and writing up to 3
  // rows past them: the next group's (written before that group's own GEMM writes them, on the same stream), or for
  // the last group 3 spare rows at the end. Each group has its own block of scales, in padded rows.
  const int x = pool.request("g.a8", (rows + 3) * k, BufferPool::Fill::kFp8);
  pool.grow(y, bf((rows + 3) * n));
  const int x_scale = pool.request("g.a8.scale", scale_rows * k_groups * 4, BufferPool::Fill::kScaleFp32);
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
  return [=](const ExecCtx& e) {
    const Fp8GemmLaunch launch{e.blas_lt, e.lt_workspace, e.lt_workspace_bytes, e.stream};
    i64 row = 0, scale_row = 0;
    for (std::size_t g = 0; g < group_rows.size(); ++g) {
      const i64 r = group_rows[g];
      const auto gi = static_cast<i64>(g);
      Fp8GemmOperands o;
      o.x = static_cast<const char*>(e.pool->ptr(x)) + row * k;
      o.x_scale = static_cast<const float*>(e.pool->ptr(x_scale)) + scale_row * k_groups;
      o.w = static_cast<const char*>(e.pool->ptr(w)) + gi * n * k;
      o.w_scale = static_cast<const float*>(e.pool->ptr(w_scale)) + gi * w_scales;
      o.y = static_cast<char*>(e.pool->ptr(y)) + row * n * 2;
      gemm->run(launch, o, r);
      row += r;
      scale_row += fp8_padded_rows(Fp8Scaling::kBlock, r);
    }
  };
}

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
        b.compute = bind_fp8_gemm(op, group_rows, n, k, y);
        return;
      }
      const int a = pool.request("g.a", m * k * 2);
      const int w =
          weight("w:" + op.name, experts * k, n, 0, n, {}, std::sqrt(3.0f / static_cast<float>(std::max<i64>(k, 1))));
      if (grouped) {
        GroupedGemm::Operands operands{a, y, {}};
        for (i64 g = 0; g < experts; ++g) operands.weights.push_back({w, g * k * n * 2});
        b.compute = grouped_gemm(pool, GroupedGemm(s.group_rows, n, k), operands);
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
    case ComputeKind::kRope: {
      const int x = pool.request("g.y", bf(m * s.heads * s.head_dim_qk));
      const i64 heads = s.heads, dim = s.head_dim_qk;
      b.compute = [=](const ExecCtx& e) {
        launch_rope(e.pool->ptr(x), m, heads, dim, heads * dim, nullptr, 10000.0f, e.stream);
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
      b.compute = [=](const ExecCtx& e) {
        AttentionArgs args = a;
        args.q = e.pool->ptr(q);
        args.k = e.pool->ptr(kk);
        args.v = e.pool->ptr(v);
        args.out = e.pool->ptr(out);
        args.key_index = idx >= 0 ? static_cast<const int*>(e.pool->ptr(idx)) : nullptr;
        run_attention(e, args);
      };
      return;
    }
    case ComputeKind::kIndexerScore: {
      const i64 qrows = s.batch * s.q_tokens;
      const int q = pool.request("g.q", bf(qrows * s.heads * s.head_dim_qk));
      const int kk = weight(fmt::format("g.k.{}", s.batch * s.kv_tokens * s.head_dim_qk), s.batch * s.kv_tokens,
                            s.head_dim_qk, 0, s.head_dim_qk, {}, 1.0f);
      const int w = pool.request("g.w", bf(qrows * s.heads));
      const int out = pool.request("g.scores", qrows * s.kv_tokens * 4);
      const auto sh = s;
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
      b.compute = [=](const ExecCtx& e) {
        launch_topk(static_cast<const float*>(e.pool->ptr(in)), static_cast<int*>(e.pool->ptr(out)), rows, n, topk,
                    e.stream);
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

}  // namespace

void bind_rank(const Schedule& schedule, const ModelSpec& model, int rank, std::uint64_t seed, RankProgram& program) {
  Binder binder(schedule, model, rank, seed, program);
  binder.bind();
  // Outputs for the numerical check: the residual stream of each micro-batch on the last PP stage.
  const RankLayout layout(schedule.meta.config);
  if (layout.coords(rank).pp_rank == schedule.meta.config.pp_size - 1) {
    for (const auto& [mb, runs] : runs_by_micro_batch(schedule, layout, rank)) {
      RankOutputs::Rows rows;
      rows.buffer = program.pool.request(fmt::format("mb{}.x", mb), 0);
      runs.for_each_row([&](i64, i64 req, i64 pos) {
        rows.request.push_back(req);
        rows.position.push_back(pos);
      });
      program.outputs.hidden.push_back(std::move(rows));
    }
  }
}

}  // namespace paratwin::cuda
