#include "backend/cuda/grouped_gemm.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/grouped_gemm_kernel.hpp"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda {

namespace {

using i64 = std::int64_t;

constexpr i64 kIntMax = std::numeric_limits<int>::max();

// cublasGemmGroupedBatchedEx exists from cuBLAS 12.5; the library loaded at run time may be older than the headers.
bool runtime_has_grouped_call() {
  int major = 0, minor = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS) return false;
  if (cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS) return false;
  return major > 12 || (major == 12 && minor >= 5);
}

// The distance in bf16 elements between consecutive pointers of `pointers` (0 for one), where all are equally spaced
// by a whole, non-negative number of elements; nullopt otherwise.
std::optional<long long> equal_spacing_elements(void* const* pointers, std::size_t count) {
  if (count < 2) return 0;
  const auto address = [&](std::size_t i) { return reinterpret_cast<std::intptr_t>(pointers[i]); };
  const std::intptr_t step_bytes = address(1) - address(0);
  if (step_bytes < 0 || step_bytes % 2 != 0) return std::nullopt;
  for (std::size_t i = 2; i < count; ++i) {
    if (address(i) - address(i - 1) != step_bytes) return std::nullopt;
  }
  return static_cast<long long>(step_bytes / 2);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- GemmStreams

GemmStreams::GemmStreams(int streams, std::size_t lt_workspace_bytes) : lt_workspace_bytes_(lt_workspace_bytes) {
  PARATWIN_ASSERT(streams >= 1 && streams <= kMaxGemmSideStreams, "{} side streams", streams);
  // A constructor that throws runs no destructor: what was made before the failure (a workspace's cudaMalloc is the
  // likeliest to fail) is released here.
  try {
    PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
    for (int i = 0; i < streams; ++i) {
      streams_.push_back(nullptr);
      PARATWIN_CUDA_CHECK(cudaStreamCreateWithFlags(&streams_.back(), cudaStreamNonBlocking));
      handles_.push_back(nullptr);
      PARATWIN_CUBLAS_CHECK(cublasCreate(&handles_.back()));
      PARATWIN_CUBLAS_CHECK(cublasSetStream(handles_.back(), streams_.back()));
      joins_.push_back(nullptr);
      PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&joins_.back(), cudaEventDisableTiming));
      signals_.push_back(nullptr);
      PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&signals_.back(), cudaEventDisableTiming));
      lt_workspaces_.push_back(nullptr);
      if (lt_workspace_bytes > 0) PARATWIN_CUDA_CHECK(cudaMalloc(&lt_workspaces_.back(), lt_workspace_bytes));
    }
  } catch (...) {
    release();
    throw;
  }
}

GemmStreams::~GemmStreams() {
  release();
}

void GemmStreams::release() noexcept {
  for (auto* h : handles_)
    if (h != nullptr) cublasDestroy(h);
  for (auto* w : lt_workspaces_)
    if (w != nullptr) cudaFree(w);
  for (auto* e : joins_)
    if (e != nullptr) cudaEventDestroy(e);
  for (auto* e : signals_)
    if (e != nullptr) cudaEventDestroy(e);
  for (auto* s : streams_)
    if (s != nullptr) cudaStreamDestroy(s);
  if (fork_ != nullptr) cudaEventDestroy(fork_);
  handles_.clear();
  lt_workspaces_.clear();
  joins_.clear();
  signals_.clear();
  streams_.clear();
  fork_ = nullptr;
}

void GemmStreams::fork(cudaStream_t origin) const {
  PARATWIN_CUDA_CHECK(cudaEventRecord(fork_, origin));
  for (auto* s : streams_) PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(s, fork_, 0));
}

void GemmStreams::join(cudaStream_t origin) const {
  for (std::size_t s = 0; s < streams_.size(); ++s) {
    PARATWIN_CUDA_CHECK(cudaEventRecord(joins_[s], streams_[s]));
    PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(origin, joins_[s], 0));
  }
}

void GemmStreams::signal(int from, int to) const {
  const auto f = static_cast<std::size_t>(from);
  PARATWIN_CUDA_CHECK(cudaEventRecord(signals_[f], streams_[f]));
  PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(streams_[static_cast<std::size_t>(to)], signals_[f], 0));
}

// ---------------------------------------------------------------------------------------------------- GroupedGemm

GroupedGemm::GroupedGemm(std::vector<i64> group_rows, i64 n, i64 k, i64 chunk_rows)
    : group_rows_(std::move(group_rows)), n_(n), k_(k), chunk_rows_(chunk_rows) {
  PARATWIN_ASSERT(n >= 1 && k >= 1 && chunk_rows >= 1 && chunk_rows <= kIntMax,
                  "grouped GEMM with n {}, k {}, chunks of {} rows", n, k, chunk_rows);
  std::vector<i64> rows_in_call;
  for (const i64 rows : group_rows_) {
    // cuBLAS takes int sizes (a group above 2^31 rows would be terabytes of activations).
    PARATWIN_ASSERT(rows >= 0 && rows <= kIntMax && n <= kIntMax && k <= kIntMax,
                    "grouped GEMM group of {} rows, n {}, k {}", rows, n, k);
    if (rows == 0) continue;
    rows_in_call.push_back(rows);
    // Column-major view: Yᵀ [n × rows] = Wᵀ [n × k] · Xᵀ [k × rows], no transposes.
    trans_.push_back(CUBLAS_OP_N);
    m_.push_back(static_cast<int>(n));
    n_arr_.push_back(static_cast<int>(rows));
    k_arr_.push_back(static_cast<int>(k));
    lda_.push_back(static_cast<int>(n));
    ldb_.push_back(static_cast<int>(k));
    ldc_.push_back(static_cast<int>(n));
    group_size_.push_back(1);
    alpha_.push_back(1.0f);
    beta_.push_back(0.0f);
  }
  equal_groups_ = std::adjacent_find(rows_in_call.begin(), rows_in_call.end(), std::not_equal_to<>()) ==
                  rows_in_call.end();
  by_rows_.resize(rows_in_call.size());
  std::iota(by_rows_.begin(), by_rows_.end(), std::size_t{0});
  std::stable_sort(by_rows_.begin(), by_rows_.end(),
                   [&](std::size_t a, std::size_t b) { return rows_in_call[a] > rows_in_call[b]; });
  i64 chunks = 0;
  for (std::size_t g = 0; g < rows_in_call.size(); ++g) {
    chunks += rows_in_call[g] / chunk_rows_;
    tail_rows_.push_back(static_cast<int>(rows_in_call[g] % chunk_rows_));
    if (tail_rows_.back() > 0) by_tail_.push_back(g);
  }
  PARATWIN_ASSERT(chunks <= kIntMax, "{} chunks", chunks);
  chunks_ = static_cast<int>(chunks);
  std::stable_sort(by_tail_.begin(), by_tail_.end(),
                   [&](std::size_t a, std::size_t b) { return tail_rows_[a] > tail_rows_[b]; });
  cublas_grouped_available_ = CUBLAS_VERSION >= 120500 && runtime_has_grouped_call();
  kernel_supported_ = cuda_plan::grouped_kernel_supports(n_, k_);
  if (kernel_supported_ && !rows_in_call.empty()) {
    auto schedule = cuda_plan::make_grouped_tile_schedule(rows_in_call, n_);
    kernel_schedule_ = std::move(schedule.table);
    kernel_pairs_ = schedule.pairs;
  }
}

std::vector<GroupedGemm::Address> GroupedGemm::operand_addresses(const Operands& operands) const {
  PARATWIN_ASSERT(operands.weights.size() == group_rows_.size(), "{} weight addresses for {} groups",
                  operands.weights.size(), group_rows_.size());
  std::vector<Address> w, x, y, chunk_w, chunk_x, chunk_y;
  i64 row = 0;
  for (std::size_t g = 0; g < group_rows_.size(); ++g) {
    if (group_rows_[g] > 0) {
      w.push_back(operands.weights[g]);
      x.push_back({operands.x, row * k_ * 2});
      y.push_back({operands.y, row * n_ * 2});
    }
    for (i64 c = 0; c < group_rows_[g] / chunk_rows_; ++c) {
      chunk_w.push_back(operands.weights[g]);
      chunk_x.push_back({operands.x, (row + c * chunk_rows_) * k_ * 2});
      chunk_y.push_back({operands.y, (row + c * chunk_rows_) * n_ * 2});
    }
    row += group_rows_[g];
  }
  for (auto* list : {&x, &y, &chunk_w, &chunk_x, &chunk_y}) w.insert(w.end(), list->begin(), list->end());
  return w;
}

bool GroupedGemm::run(const Launch& launch, GroupedGemmMethod method) const {
  if (m_.empty()) return true;  // every group empty: nothing to compute
  switch (method) {
    case GroupedGemmMethod::kPersistentKernel:
      if (run_kernel(launch)) return true;
      if (launch.side != nullptr) {
        run_concurrent(launch);
        return false;
      }
      break;
    case GroupedGemmMethod::kCublasGrouped:
      if (run_cublas_grouped(launch)) return true;
      break;
    case GroupedGemmMethod::kChunkedBatched:
      if (run_chunked(launch)) return true;
      break;
    case GroupedGemmMethod::kConcurrent:
      if (launch.side != nullptr) {
        run_concurrent(launch);
        return true;
      }
      break;
    case GroupedGemmMethod::kStridedBatched:
      if (run_strided_batched(launch)) return true;
      if (launch.side != nullptr) {
        run_concurrent(launch);
        return false;
      }
      break;
    case GroupedGemmMethod::kSequential:
      break;
  }
  for (std::size_t g = 0; g < m_.size(); ++g) gemm(launch.blas, launch.host_table, g);
  return method == GroupedGemmMethod::kSequential;
}


// One batch of equal groups, each with the strides between the groups' operands read off the resolved pointer table
// (X and Y are consecutive row blocks, so theirs are rows·k and rows·n; W's are wherever the caller put the weights).
bool GroupedGemm::run_strided_batched(const Launch& launch) const {
  if (!equal_groups_ || launch.host_table == nullptr) return false;
  const auto groups = m_.size();
  const auto w_step = equal_spacing_elements(launch.host_table, groups);
  const auto x_step = equal_spacing_elements(launch.host_table + groups, groups);
  const auto y_step = equal_spacing_elements(launch.host_table + 2 * groups, groups);
  if (!w_step || !x_step || !y_step) return false;
  const float alpha = 1.0f, beta = 0.0f;
  PARATWIN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      launch.blas, CUBLAS_OP_N, CUBLAS_OP_N, m_[0], n_arr_[0], k_arr_[0], &alpha, launch.host_table[0], CUDA_R_16BF,
      lda_[0], *w_step, launch.host_table[groups], CUDA_R_16BF, ldb_[0], *x_step, &beta, launch.host_table[2 * groups],
      CUDA_R_16BF, ldc_[0], *y_step, static_cast<int>(groups), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return true;
}

void GroupedGemm::gemm(cublasHandle_t blas, void* const* host_table, std::size_t g) const {
  const auto groups = m_.size();
  PARATWIN_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, m_[g], n_arr_[g], k_arr_[g], &alpha_[g],
                                     host_table[g], CUDA_R_16BF, lda_[g], host_table[groups + g], CUDA_R_16BF, ldb_[g],
                                     &beta_[g], host_table[2 * groups + g], CUDA_R_16BF, ldc_[g], CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}

bool GroupedGemm::run_cublas_grouped(const Launch& launch) const {
#if CUBLAS_VERSION >= 120500
  if (!cublas_grouped_available_) return false;
  const auto groups = m_.size();
  const void* const* table = launch.device_table;
  const cublasStatus_t status =
      cublasGemmGroupedBatchedEx(launch.blas, trans_.data(), trans_.data(), m_.data(), n_arr_.data(), k_arr_.data(),
                                 alpha_.data(), table, CUDA_R_16BF, lda_.data(), table + groups, CUDA_R_16BF,
                                 ldb_.data(), beta_.data(), launch.device_table + 2 * groups, CUDA_R_16BF, ldc_.data(),
                                 static_cast<int>(groups), group_size_.data(), CUBLAS_COMPUTE_32F);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  PARATWIN_CUBLAS_CHECK(status);
  return true;
#else
  static_cast<void>(launch);
  return false;
#endif
}

std::vector<CUtensorMap> GroupedGemm::kernel_tensor_maps(void* const* host_table) const {
  if (!kernel_supported_ || m_.empty()) return {};
  std::vector<CUtensorMap> maps(2 * m_.size());
  if (!encode_grouped_tensor_maps(host_table, n_arr_.data(), static_cast<int>(m_.size()), static_cast<int>(n_),
                                  static_cast<int>(k_), maps.data())) {
    return {};
  }
  return maps;
}

bool GroupedGemm::run_kernel(const Launch& launch) const {
  if (!kernel_supported_ || launch.device_table == nullptr || launch.device_schedule == nullptr ||
      launch.device_tensor_maps == nullptr) {
    return false;
  }
  // W, X and Y were checked against the kernel's 16-byte rule when the tensor maps were encoded (no maps, no kernel).
  const auto groups = m_.size();
  GroupedKernelArgs args;
  args.table = launch.device_table;
  args.maps = launch.device_tensor_maps;
  args.schedule = launch.device_schedule;
  args.groups = static_cast<int>(groups);
  args.pairs = kernel_pairs_;
  args.n = static_cast<int>(n_);
  args.k = static_cast<int>(k_);
  launch_grouped_gemm_kernel(args, launch.stream);
  return true;
}

// Fork: every side stream waits for what the caller's stream enqueued so far. Each non-empty group goes to the side
// stream with the fewest rows so far (largest groups first), and the caller's stream waits for every side stream.
void GroupedGemm::run_concurrent(const Launch& launch) const {
  const GemmStreams& side = *launch.side;
  const auto streams = side.streams_.size();
  side.fork(launch.stream);
  std::array<i64, kMaxGemmSideStreams> load{};  // rows given to each side stream so far
  for (const std::size_t g : by_rows_) {
    const auto s = static_cast<std::size_t>(std::min_element(load.begin(), load.begin() + streams) - load.begin());
    gemm(side.handles_[s], launch.host_table, g);
    load[s] += n_arr_[g];
  }
  side.join(launch.stream);
}

// The batch of whole chunks on side stream 0, each group's remainder rows on the others (largest first, to the
// stream with the fewest rows so far), all forked from and joined into the caller's stream.
bool GroupedGemm::run_chunked(const Launch& launch) const {
  if (launch.side == nullptr || launch.device_table == nullptr) return false;
  const GemmStreams& side = *launch.side;
  const auto streams = side.streams_.size();
  const auto groups = m_.size();
  side.fork(launch.stream);
  std::array<i64, kMaxGemmSideStreams> load{};
  if (chunks_ > 0) {
    const float alpha = 1.0f, beta = 0.0f;
    const auto* chunk_table = launch.device_table + 3 * groups;
    const auto chunks = static_cast<std::size_t>(chunks_);
    PARATWIN_CUBLAS_CHECK(cublasGemmBatchedEx(
        side.handles_[0], CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n_), static_cast<int>(chunk_rows_),
        static_cast<int>(k_), &alpha, chunk_table, CUDA_R_16BF, static_cast<int>(n_), chunk_table + chunks, CUDA_R_16BF,
        static_cast<int>(k_), &beta, launch.device_table + 3 * groups + 2 * chunks, CUDA_R_16BF, static_cast<int>(n_),
        chunks_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    load[0] = static_cast<i64>(chunks_) * chunk_rows_;
  }
  const float alpha = 1.0f, beta = 0.0f;
  for (const std::size_t g : by_tail_) {
    const auto s = static_cast<std::size_t>(std::min_element(load.begin(), load.begin() + streams) - load.begin());
    const i64 first = n_arr_[g] - tail_rows_[g];  // the group's first row past its whole chunks
    const auto* x = static_cast<const char*>(launch.host_table[groups + g]) + first * k_ * 2;
    auto* y = static_cast<char*>(launch.host_table[2 * groups + g]) + first * n_ * 2;
    PARATWIN_CUBLAS_CHECK(cublasGemmEx(side.handles_[s], CUBLAS_OP_N, CUBLAS_OP_N, m_[g], tail_rows_[g], k_arr_[g],
                                       &alpha, launch.host_table[g], CUDA_R_16BF, lda_[g], x, CUDA_R_16BF, ldb_[g],
                                       &beta, y, CUDA_R_16BF, ldc_[g], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    load[s] += tail_rows_[g];
  }
  side.join(launch.stream);
  return true;
}

double GroupedGemm::flops() const {
  double rows = 0;
  for (const i64 r : group_rows_) rows += static_cast<double>(r);
  return 2.0 * rows * static_cast<double>(n_) * static_cast<double>(k_);
}

}  // namespace paratwin::cuda
