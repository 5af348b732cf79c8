#include "backend/cuda/fp8_grouped_gemm.hpp"

#include <cstdint>
#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/fp8_grouped_gemm_kernel.hpp"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {

namespace {

using i64 = std::int64_t;

/// A block-scaled call's rows are a multiple of this (fp8_gemm.hpp).
constexpr i64 kBlockRowMultiple = 4;

}  // namespace

Fp8GroupedGemm::Fp8GroupedGemm(std::vector<i64> group_rows, i64 n, i64 k)
    : group_rows_(std::move(group_rows)), n_(n), k_(k), gemm_(Fp8Scaling::kBlock, n, k) {
  PARATWIN_ASSERT(fp8_padded_rows(Fp8Scaling::kBlock, 1) == kBlockRowMultiple, "fp8 block GEMM row rounding");
  for (const i64 r : group_rows_) {
    PARATWIN_ASSERT(r >= 0, "fp8 grouped GEMM group of {} rows", r);
    offsets_.push_back(offsets_.back() + r);
    scale_offsets_.push_back(scale_offsets_.back() + fp8_padded_rows(Fp8Scaling::kBlock, r));
  }
  if (!fp8_grouped_kernel_supports(n_, k_) || rows() + kBlockRowMultiple > std::int64_t{1} << 30) return;
  std::vector<i64> rows_in_call;
  std::vector<int> places;  // per non-empty group: first row, first scale row, expert
  for (std::size_t g = 0; g < group_rows_.size(); ++g) {
    if (group_rows_[g] == 0) continue;
    rows_in_call.push_back(group_rows_[g]);
    places.insert(places.end(),
                  {static_cast<int>(offsets_[g]), static_cast<int>(scale_offsets_[g]), static_cast<int>(g)});
  }
  if (rows_in_call.empty()) return;
  auto schedule = cuda_plan::make_grouped_tile_schedule(rows_in_call, n_);
  kernel_table_ = std::move(schedule.table);
  kernel_table_.insert(kernel_table_.end(), places.begin(), places.end());
  kernel_groups_ = schedule.groups;
  kernel_pairs_ = schedule.pairs;
  int* counter = nullptr;
  PARATWIN_CUDA_CHECK(cudaMalloc(&counter, sizeof(int)));
  pair_counter_.reset(counter);
}

void Fp8GroupedGemm::DeviceFree::operator()(int* p) const noexcept {
  cudaFree(p);
}

bool Fp8GroupedGemm::run_kernel(const Launch& launch, const Operands& operands) const {
  if (launch.device_kernel_table == nullptr || !fp8_grouped_kernel_supports(n_, k_)) return false;
  if (kernel_pairs_ == 0) return true;  // every group is empty
  const auto aligned16 = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  // the bulk stores' and the scales' bulk copies' rule
  if (!aligned16(operands.y) || !aligned16(operands.x_scale) || !aligned16(operands.w_scale)) return false;
  Fp8GroupedKernelArgs args;
  const auto experts = static_cast<i64>(group_rows_.size());
  if (!encode_fp8_grouped_tensor_maps(operands.x, rows() + kBlockRowMultiple - 1, operands.w, experts, n_, k_,
                                      args.x_map, args.w_map)) {
    return false;
  }
  args.table = launch.device_kernel_table;
  args.x_scale = operands.x_scale;
  args.w_scale = operands.w_scale;
  args.y = operands.y;
  args.pair_counter = pair_counter_.get();
  args.groups = kernel_groups_;
  args.pairs = kernel_pairs_;
  args.n = static_cast<int>(n_);
  args.k = static_cast<int>(k_);
  launch_fp8_grouped_gemm_kernel(args, launch.stream);
  return true;
}

i64 Fp8GroupedGemm::weight_scale_count() const {
  return fp8_weight_scale_count(Fp8Scaling::kBlock, n_, k_);
}

const std::vector<cuda_plan::Fp8StreamRun>& Fp8GroupedGemm::stream_runs(int streams) {
  if (streams != planned_streams_) {
    runs_ = cuda_plan::plan_fp8_group_streams(group_rows_, streams, kBlockRowMultiple);
    planned_streams_ = streams;
  }
  return runs_;
}

void Fp8GroupedGemm::run_groups(const Fp8GemmLaunch& launch, const Operands& operands, i64 first, i64 end) {
  const i64 k_groups = k_ / kFp8ScaleBlock, w_scales = weight_scale_count();
  for (i64 g = first; g < end; ++g) {
    const auto gi = static_cast<std::size_t>(g);
    Fp8GemmOperands o;
    o.x = static_cast<const char*>(operands.x) + offsets_[gi] * k_;
    o.x_scale = operands.x_scale + scale_offsets_[gi] * k_groups;
    o.w = static_cast<const char*>(operands.w) + g * n_ * k_;
    o.w_scale = operands.w_scale + g * w_scales;
    o.y = static_cast<char*>(operands.y) + offsets_[gi] * n_ * 2;
    gemm_.run(launch, o, group_rows_[gi]);
  }
}

void Fp8GroupedGemm::run(const Launch& launch, const Operands& operands) {
  const auto groups = static_cast<i64>(group_rows_.size());
  const GemmStreams* side = launch.side;
  if (side == nullptr || side->lt_workspace(0) == nullptr || rows() == 0) {
    run_groups({launch.lt, launch.workspace, launch.workspace_bytes, launch.stream}, operands, 0, groups);
    return;
  }
  const auto& runs = stream_runs(side->size());
  if (runs.size() == 1) {  // one run (e.g. one group): no fork and join
    run_groups({launch.lt, launch.workspace, launch.workspace_bytes, launch.stream}, operands, 0, groups);
    return;
  }
  const auto on = [&](std::size_t s) {
    const int i = static_cast<int>(s);
    return Fp8GemmLaunch{launch.lt, side->lt_workspace(i), side->lt_workspace_bytes(), side->stream(i)};
  };
  side->fork(launch.stream);
  // Every tail first; then each stream's signal (its tail) to the next stream where that one's head waits for it,
  // recorded once every tail is enqueued so that no tail waits for another; then the heads.
  for (std::size_t s = 0; s < runs.size(); ++s) run_groups(on(s), operands, runs[s].tail, runs[s].end);
  for (std::size_t s = 1; s < runs.size(); ++s) {
    if (runs[s].waits_for_previous) side->signal(static_cast<int>(s - 1), static_cast<int>(s));
  }
  for (std::size_t s = 0; s < runs.size(); ++s) run_groups(on(s), operands, runs[s].first, runs[s].tail);
  side->join(launch.stream);
}

}  // namespace paratwin::cuda
