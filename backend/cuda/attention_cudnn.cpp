#include "backend/cuda/attention_cudnn.hpp"

#include <cudnn.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/cuda/attention_layout.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;

constexpr i64 kAlignBytes = 16;         // cuDNN's fused attention reads whole 16-byte vectors
constexpr i64 kWorkspaceAlignBytes = 256;

i64 round_up(i64 n, i64 to) {
  return (n + to - 1) / to * to;
}

// A failed cuDNN call, caught where the shape is known (plan building turns "not supported" into a fallback).
struct CudnnCallError {
  cudnnStatus_t status;
  std::string call;
  std::string detail;
};

bool is_not_supported(cudnnStatus_t s) {
  // cuDNN 9 statuses carry sub-codes: 3000-3999 are all "not supported" (graph pattern, shape, layout, ...).
  return static_cast<int>(s) / 1000 == static_cast<int>(CUDNN_STATUS_NOT_SUPPORTED) / 1000;
}

void check(cudnnStatus_t s, const char* call) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  std::array<char, 1024> detail{};
  cudnnGetLastErrorString(detail.data(), detail.size());
  throw CudnnCallError{s, call, detail.data()};
}

// One backend descriptor, destroyed with its owner.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    check(cudnnBackendCreateDescriptor(type, &d_), "cudnnBackendCreateDescriptor");
  }
  ~Desc() {
    if (d_ != nullptr) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Desc& operator=(Desc&& o) noexcept {
    std::swap(d_, o.d_);
    return *this;
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, i64 count, const void* values) {
    check(cudnnBackendSetAttribute(d_, name, type, count, values), "cudnnBackendSetAttribute");
    return *this;
  }
  template <class T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T& value) {
    return set(name, type, 1, &value);
  }
  Desc& finalize(const char* what) {
    check(cudnnBackendFinalize(d_), what);
    return *this;
  }
  [[nodiscard]] cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::array<i64, 4>;

// Everything an execution plan depends on; pointers and the softmax scale are run-time inputs.
struct GraphShape {
  i64 batch = 0, s_q = 0, s_kv = 0, heads = 0, kv_heads = 0, d_qk = 0, d_v = 0;
  i64 q_row = 0, q_batch = 0, k_row = 0, k_batch = 0, v_row = 0, v_batch = 0, o_row = 0, o_batch = 0;
  i64 mask_shift = -1;  // −1: every key visible; else key j is visible to query i when j ≤ i + mask_shift
  bool stats = false;   // the softmax statistics (log-sum-exp) are an output

  bool operator==(const GraphShape&) const = default;

  [[nodiscard]] std::string describe() const {
    return fmt::format(
        "attention of {} request(s) × {} queries over {} keys, {} heads over {} KV heads, head dims {}/{}, {}{}", batch,
        s_q, s_kv, heads, kv_heads, d_qk, d_v,
        mask_shift < 0 ? std::string("no mask") : fmt::format("causal mask shifted by {}", mask_shift),
        stats ? ", with log-sum-exp" : "");
  }
};

struct GraphShapeHash {
  std::size_t operator()(const GraphShape& s) const {
    std::size_t h = std::hash<bool>{}(s.stats);
    for (const i64 v : {s.batch, s.s_q, s.s_kv, s.heads, s.kv_heads, s.d_qk, s.d_v, s.q_row, s.q_batch, s.k_row,
                        s.k_batch, s.v_row, s.v_batch, s.o_row, s.o_batch, s.mask_shift}) {
      h ^= std::hash<i64>{}(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    }
    return h;
  }
};

// Tensor ids of the variant pack.
enum Uid : i64 { kQ = 1, kKt, kV, kO, kStats, kScale, kNegInf, kShift, kFirstVirtual = 100 };

// A finalized execution plan and the descriptors it was built from (kept alive with it).
struct Plan {
  bool supported = false;
  std::string declined;  // why cuDNN has no engine for the shape
  std::deque<Desc> parts;
  std::unique_ptr<Desc> plan;
  i64 workspace_bytes = 0;
};

class GraphBuilder {
 public:
  GraphBuilder(cudnnHandle_t handle, const GraphShape& s) : handle_(handle), s_(s) {}

  // Builds the pattern graph of cuDNN's fused flash attention and its execution plan; cuDNN's "not supported"
  // statuses become a declined plan, other failures throw CudnnCallError.
  Plan build() {
    const i64 b = s_.batch, h = s_.heads, hk = s_.kv_heads, sq = s_.s_q, skv = s_.s_kv;
    const Dims score_dims{b, h, sq, skv}, score_strides{h * sq * skv, sq * skv, skv, 1};
    const Dims row_dims{b, h, sq, 1}, row_strides{h * sq, sq, 1, 1};

    const auto& q = tensor(kQ, CUDNN_DATA_BFLOAT16, {b, h, sq, s_.d_qk}, {s_.q_batch, s_.d_qk, s_.q_row, 1});
    // Kᵀ is a view of K's rows: cuDNN's fused attention takes the transposed operand of the first product.
    const auto& kt = tensor(kKt, CUDNN_DATA_BFLOAT16, {b, hk, s_.d_qk, skv}, {s_.k_batch, s_.d_qk, 1, s_.k_row});
    const auto& v = tensor(kV, CUDNN_DATA_BFLOAT16, {b, hk, skv, s_.d_v}, {s_.v_batch, s_.d_v, s_.v_row, 1});
    const auto& o = tensor(kO, CUDNN_DATA_BFLOAT16, {b, h, sq, s_.d_v}, {s_.o_batch, s_.d_v, s_.o_row, 1});
    const auto& scale = scalar(kScale, CUDNN_DATA_FLOAT);

    const auto& scores = virtual_tensor(CUDNN_DATA_FLOAT, score_dims, score_strides);
    matmul(q, kt, scores);
    const Desc* masked = &virtual_tensor(CUDNN_DATA_FLOAT, score_dims, score_strides);
    pointwise(CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, scores, &scale, nullptr, *masked);
    if (s_.mask_shift >= 0) {
      // Keep key j for query i when i + shift ≥ j (cuDNN's right-bound diagonal mask); −inf elsewhere.
      const auto& row = virtual_tensor(CUDNN_DATA_INT32, score_dims, score_strides);
      const auto& col = virtual_tensor(CUDNN_DATA_INT32, score_dims, score_strides);
      pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, *masked, nullptr, nullptr, row, 2);
      pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, *masked, nullptr, nullptr, col, 3);
      const Desc* bound = &row;
      if (s_.mask_shift > 0) {
        const auto& shift = scalar(kShift, CUDNN_DATA_INT32);
        bound = &virtual_tensor(CUDNN_DATA_INT32, score_dims, score_strides);
        pointwise(CUDNN_POINTWISE_ADD, CUDNN_DATA_INT32, row, &shift, nullptr, *bound);
      }
      const auto& keep = virtual_tensor(CUDNN_DATA_BOOLEAN, score_dims, score_strides);
      pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, *bound, &col, nullptr, keep);
      const auto& neg_inf = scalar(kNegInf, CUDNN_DATA_FLOAT);
      const auto& selected = virtual_tensor(CUDNN_DATA_FLOAT, score_dims, score_strides);
      pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, *masked, &neg_inf, &keep, selected);
      masked = &selected;
    }
    // Softmax with its statistics: max, exp(S − max), sum, stats = max + log(sum), P = exp(S − max) / sum.
    const auto& max = virtual_tensor(CUDNN_DATA_FLOAT, row_dims, row_strides);
    reduction(CUDNN_REDUCE_TENSOR_MAX, *masked, max);
    const auto& centred = virtual_tensor(CUDNN_DATA_FLOAT, score_dims, score_strides);
    pointwise(CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, *masked, &max, nullptr, centred);
    const auto& exps = virtual_tensor(CUDNN_DATA_FLOAT, score_dims, score_strides);
    pointwise(CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, centred, nullptr, nullptr, exps);
    const auto& sum = virtual_tensor(CUDNN_DATA_FLOAT, row_dims, row_strides);
    reduction(CUDNN_REDUCE_TENSOR_ADD, exps, sum);
    const auto& log_sum = virtual_tensor(CUDNN_DATA_FLOAT, row_dims, row_strides);
    pointwise(CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, sum, nullptr, nullptr, log_sum);
    // The engine expects the statistics in the graph even when nobody reads them (then as a virtual tensor).
    const auto& stats = s_.stats ? tensor(kStats, CUDNN_DATA_FLOAT, row_dims, row_strides)
                                 : virtual_tensor(CUDNN_DATA_FLOAT, row_dims, row_strides);
    pointwise(CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, max, &log_sum, nullptr, stats);
    // P enters the second product in the input type (bf16), as the fused engine requires.
    const auto& probs = virtual_tensor(CUDNN_DATA_BFLOAT16, score_dims, score_strides);
    pointwise(CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, exps, &sum, nullptr, probs);
    matmul(probs, v, o);
    return finish();
  }

 private:
  const Desc& keep(Desc d) {
    parts_.push_back(std::move(d));
    return parts_.back();
  }

  const Desc& tensor(i64 uid, cudnnDataType_t type, const Dims& dims, const Dims& strides, bool is_virtual = false,
                     bool by_value = false) {
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data())
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data())
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, kAlignBytes)
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, is_virtual);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, true);
    t.finalize("cudnnBackendFinalize(tensor)");
    return keep(std::move(t));
  }
  const Desc& virtual_tensor(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return tensor(next_virtual_++, type, dims, strides, true);
  }
  const Desc& scalar(i64 uid, cudnnDataType_t type) { return tensor(uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }

  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t precision, const Desc& x, const Desc* b, const Desc* t,
                 const Desc& y, i64 axis = -1) {
    Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, precision);
    if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, axis);
    pw.finalize("cudnnBackendFinalize(pointwise)");
    Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw.get())
        .set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x.get())
        .set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y.get());
    if (b != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b->get());
    if (t != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, t->get());
    op.finalize("cudnnBackendFinalize(pointwise operation)");
    keep(std::move(pw));
    ops_.push_back(keep(std::move(op)).get());
  }

  void reduction(cudnnReduceTensorOp_t mode, const Desc& x, const Desc& y) {
    Desc red(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    red.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, mode)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT)
        .finalize("cudnnBackendFinalize(reduction)");
    Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x.get())
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y.get())
        .set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, red.get())
        .finalize("cudnnBackendFinalize(reduction operation)");
    keep(std::move(red));
    ops_.push_back(keep(std::move(op)).get());
  }

  void matmul(const Desc& a, const Desc& b, const Desc& c) {
    Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    mm.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT).finalize("cudnnBackendFinalize(matmul)");
    Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, a.get())
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b.get())
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, c.get())
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, mm.get())
        .finalize("cudnnBackendFinalize(matmul operation)");
    keep(std::move(mm));
    ops_.push_back(keep(std::move(op)).get());
  }

  // Operation graph, heuristics, and the first engine configuration that finalizes into a plan.
  Plan finish() {
    Plan result;
    try {
      Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
      graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle_)
          .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<i64>(ops_.size()), ops_.data())
          .finalize("cudnnBackendFinalize(operation graph)");
      std::string tried;
      for (const auto mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
        if (auto plan = first_plan(graph, mode, tried)) {
          i64 returned = 0;
          check(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                         &returned, &result.workspace_bytes),
                "cudnnBackendGetAttribute(execution plan workspace size)");
          result.supported = true;
          result.plan = std::move(plan);
          break;
        }
      }
      if (!result.supported) result.declined = fmt::format("no cuDNN engine finalizes the graph ({})", tried);
      result.parts = std::move(parts_);
      result.parts.push_back(std::move(graph));
    } catch (const CudnnCallError& e) {
      if (!is_not_supported(e.status)) throw;
      result = Plan{};
      result.declined = fmt::format("{}: {} ({})", e.call, cudnnGetErrorString(e.status), e.detail);
    }
    return result;
  }

  std::unique_ptr<Desc> first_plan(const Desc& graph, cudnnBackendHeurMode_t mode, std::string& tried) {
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, graph.get())
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, mode)
        .finalize("cudnnBackendFinalize(engine heuristics)");
    i64 count = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                   nullptr),
          "cudnnBackendGetAttribute(engine heuristics results)");
    if (count <= 0) return nullptr;
    std::vector<Desc> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (i64 i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    i64 returned = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                   &returned, raw.data()),
          "cudnnBackendGetAttribute(engine heuristics results)");
    for (i64 i = 0; i < returned; ++i) {
      auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle_)
          .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR,
               raw[static_cast<std::size_t>(i)]);
      const auto st = cudnnBackendFinalize(plan->get());
      if (st == CUDNN_STATUS_SUCCESS) {
        parts_.push_back(std::move(configs[static_cast<std::size_t>(i)]));
        return plan;
      }
      std::array<char, 512> detail{};
      cudnnGetLastErrorString(detail.data(), detail.size());
      tried = fmt::format("last engine: {}: {}", cudnnGetErrorString(st), detail.data());
    }
    return nullptr;
  }

  cudnnHandle_t handle_;
  GraphShape s_;
  std::deque<Desc> parts_;  // tensors and operations: a deque, so references handed out stay valid
  std::vector<cudnnBackendDescriptor_t> ops_;
  i64 next_virtual_ = kFirstVirtual;
};

}  // namespace

struct CudnnAttention::Impl {
  cudnnHandle_t handle = nullptr;
  std::unordered_map<GraphShape, Plan, GraphShapeHash> plans;
  std::string declined;

  const Plan& plan_for(const GraphShape& s) {
    auto it = plans.find(s);
    if (it != plans.end()) return it->second;
    try {
      return plans.emplace(s, GraphBuilder(handle, s).build()).first->second;
    } catch (const CudnnCallError& e) {
      fail("cuDNN {} failed with {} ({}) building the fused {}", e.call, cudnnGetErrorString(e.status), e.detail,
           s.describe());
    }
  }

  bool decline(std::string why) {
    declined = std::move(why);
    return false;
  }
};

CudnnAttention::CudnnAttention() : impl_(std::make_unique<Impl>()) {
  const auto st = cudnnCreate(&impl_->handle);
  if (st != CUDNN_STATUS_SUCCESS) {
    fail("cudnnCreate failed with {}: cuDNN 9 (libcudnn.so.9 and its engine libraries) must be installed where the "
         "CUDA backend runs",
         cudnnGetErrorString(st));
  }
}

CudnnAttention::~CudnnAttention() {
  impl_->plans.clear();  // plans before the handle they were built with
  if (impl_->handle != nullptr) cudnnDestroy(impl_->handle);
}

const std::string& CudnnAttention::declined_reason() const {
  return impl_->declined;
}

std::size_t CudnnAttention::cached_plans() const {
  return impl_->plans.size();
}

std::size_t CudnnAttention::library_version() {
  return cudnnGetVersion();
}

bool CudnnAttention::run(const AttentionArgs& a, void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
  auto& m = *impl_;
  if (a.key_index != nullptr) return m.decline("index-sparse attention");
  if (a.batch * a.q_tokens * a.heads == 0) return true;
  if (a.kv_heads <= 0 || a.heads % a.kv_heads != 0) return m.decline("query heads do not form equal KV-head groups");
  if (a.causal && (a.q_stride != 1 || a.kv_stride != 1)) {
    return m.decline(fmt::format("causal attention over strided positions (query stride {}, key stride {})",
                                 a.q_stride, a.kv_stride));
  }
  const bool partial = a.out_f32 != nullptr;
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kAlignBytes == 0; };
  constexpr i64 kElemsPerVector = kAlignBytes / 2;
  if (!aligned(a.q) || !aligned(a.k) || !aligned(a.v) || !aligned(partial ? a.out_f32 : a.out) ||
      a.q_row_stride % kElemsPerVector != 0 || a.k_row_stride % kElemsPerVector != 0 ||
      a.v_row_stride % kElemsPerVector != 0 || a.out_row_stride % kElemsPerVector != 0 ||
      a.head_dim_qk % kElemsPerVector != 0 || a.head_dim_v % kElemsPerVector != 0) {
    return m.decline("rows or head dims that are not whole 16-byte vectors");
  }

  // Query i sees key j when j ≤ i + shift; the first `blind` queries see none and stay outside the graph.
  const i64 shift = a.q_start - a.kv_start;
  const i64 blind = a.kv_tokens == 0 ? a.q_tokens : (a.causal ? std::clamp<i64>(-shift, 0, a.q_tokens) : 0);
  const i64 rows = a.q_tokens - blind;
  const i64 group = a.heads / a.kv_heads;
  // The graph of `kv_per_call` KV heads and their query heads; calls over fewer heads than all cover the heads in
  // turn (pointers offset per call), which bounds the workspace the partial form's staged output needs.
  const auto shape_for = [&](i64 kv_per_call) {
    GraphShape g;
    g.batch = a.batch;
    g.s_q = rows;
    g.s_kv = a.kv_tokens;
    g.heads = kv_per_call * group;
    g.kv_heads = kv_per_call;
    g.d_qk = a.head_dim_qk;
    g.d_v = a.head_dim_v;
    // A batch stride only matters between requests; with one request any value that cuDNN accepts will do.
    const i64 kv_rows = std::max<i64>(a.batch > 1 ? a.kv_batch_rows : a.kv_tokens, 1);
    g.q_row = a.q_row_stride;
    g.q_batch = std::max<i64>(a.q_tokens, 1) * a.q_row_stride;
    g.k_row = a.k_row_stride;
    g.k_batch = kv_rows * a.k_row_stride;
    g.v_row = a.v_row_stride;
    g.v_batch = kv_rows * a.v_row_stride;
    // The partial form stages cuDNN's bf16 output packed in the workspace and widens it into out_f32.
    g.o_row = partial ? g.heads * a.head_dim_v : a.out_row_stride;
    g.o_batch = partial ? std::max<i64>(rows, 1) * g.o_row : std::max<i64>(a.q_tokens, 1) * a.out_row_stride;
    g.mask_shift = a.causal && shift + blind < a.kv_tokens - 1 ? shift + blind : -1;
    g.stats = a.lse != nullptr;
    return g;
  };
  const auto stats_bytes = [&](const GraphShape& g) {
    return g.stats ? round_up(g.batch * g.heads * rows * 4, kWorkspaceAlignBytes) : 0;
  };
  const auto staging_bytes = [&](const GraphShape& g) { return partial ? g.batch * rows * g.o_row * 2 : 0; };

  GraphShape s = shape_for(a.kv_heads);
  const Plan* plan = nullptr;
  i64 plan_bytes = 0;
  if (rows > 0) {
    plan = &m.plan_for(s);
    if (!plan->supported) return m.decline(plan->declined);
    plan_bytes = round_up(plan->workspace_bytes, kWorkspaceAlignBytes);
    const auto fits = [&](const GraphShape& g, i64 plan_ws) {
      return plan_ws + stats_bytes(g) + staging_bytes(g) <= static_cast<i64>(workspace_bytes);
    };
    if (!fits(s, plan_bytes)) {
      // Fewer KV heads per call: the most that divides the KV heads and fits (assuming no larger plan workspace).
      i64 kv_per_call = a.kv_heads;
      while (kv_per_call > 1 && (a.kv_heads % kv_per_call != 0 || !fits(shape_for(kv_per_call), plan_bytes))) {
        --kv_per_call;
      }
      s = shape_for(kv_per_call);
      plan = &m.plan_for(s);
      if (!plan->supported) return m.decline(plan->declined);
      plan_bytes = round_up(plan->workspace_bytes, kWorkspaceAlignBytes);
      if (!fits(s, plan_bytes)) {
        return m.decline(fmt::format("{} needs {} MiB of workspace, more than the {} MiB given", s.describe(),
                                     (plan_bytes + stats_bytes(s) + staging_bytes(s)) >> 20, workspace_bytes >> 20));
      }
    }
  }

  const i64 out_elem_bytes = partial ? 4 : 2;
  char* out_base = partial ? reinterpret_cast<char*>(a.out_f32) : static_cast<char*>(a.out);
  if (blind > 0) {
    for (i64 b = 0; b < a.batch; ++b) {
      PARATWIN_CUDA_CHECK(cudaMemset2DAsync(out_base + b * a.q_tokens * a.out_row_stride * out_elem_bytes,
                                            static_cast<std::size_t>(a.out_row_stride * out_elem_bytes), 0,
                                            static_cast<std::size_t>(a.heads * a.head_dim_v * out_elem_bytes),
                                            static_cast<std::size_t>(blind), stream));
    }
    if (a.lse != nullptr) launch_lse_no_keys(a.lse, a.batch, blind, a.q_tokens, a.heads, stream);
  }
  if (rows == 0) return true;

  char* ws = static_cast<char*>(workspace);
  float* stats = s.stats ? reinterpret_cast<float*>(ws + plan_bytes) : nullptr;
  char* staging = ws + plan_bytes + stats_bytes(s);
  float scale = a.scale;
  float neg_inf = -std::numeric_limits<float>::infinity();
  auto shift_value = static_cast<std::int32_t>(s.mask_shift);
  try {
    check(cudnnSetStream(m.handle, stream), "cudnnSetStream");
  } catch (const CudnnCallError& e) {
    fail("cuDNN {} failed with {} ({})", e.call, cudnnGetErrorString(e.status), e.detail);
  }
  for (i64 kv0 = 0; kv0 < a.kv_heads; kv0 += s.kv_heads) {
    const i64 h0 = kv0 * group;
    const auto* q = static_cast<const char*>(a.q) + (blind * a.q_row_stride + h0 * a.head_dim_qk) * 2;
    const auto* k = static_cast<const char*>(a.k) + kv0 * a.head_dim_qk * 2;
    const auto* v = static_cast<const char*>(a.v) + kv0 * a.head_dim_v * 2;
    char* out = partial ? staging : out_base + (blind * a.out_row_stride + h0 * a.head_dim_v) * 2;
    std::vector<i64> uids{kQ, kKt, kV, kO, kScale};
    std::vector<void*> ptrs{const_cast<char*>(q), const_cast<char*>(k), const_cast<char*>(v), out, &scale};
    if (s.stats) {
      uids.push_back(kStats);
      ptrs.push_back(stats);
    }
    if (s.mask_shift >= 0) {
      uids.push_back(kNegInf);
      ptrs.push_back(&neg_inf);
    }
    if (s.mask_shift > 0) {
      uids.push_back(kShift);
      ptrs.push_back(&shift_value);
    }
    try {
      Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
      pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<i64>(uids.size()), uids.data())
          .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<i64>(ptrs.size()), ptrs.data())
          .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, workspace)
          .finalize("cudnnBackendFinalize(variant pack)");
      check(cudnnBackendExecute(m.handle, plan->plan->get(), pack.get()), "cudnnBackendExecute");
    } catch (const CudnnCallError& e) {
      fail("cuDNN {} failed with {} ({}) running the fused {}", e.call, cudnnGetErrorString(e.status), e.detail,
           s.describe());
    }
    // The statistics and the staged output are reused by the next call: these kernels run before it on the stream.
    if (s.stats) launch_stats_to_lse(stats, a.lse, a.batch, s.heads, rows, a.heads, h0, a.q_tokens, blind, stream);
    if (partial) {
      launch_bf16_rows_to_f32(staging, s.o_row, s.o_batch, a.out_f32 + blind * a.out_row_stride + h0 * a.head_dim_v,
                              a.out_row_stride, a.q_tokens * a.out_row_stride, a.batch, rows, s.heads * a.head_dim_v,
                              stream);
    }
  }
  return true;
}

}  // namespace paratwin::cuda
