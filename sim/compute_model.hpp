#pragma once
/// Roofline compute model with efficiency curves. Internal to sim/.

#include "models/schedule.hpp"
#include "sim/calibration.hpp"
#include "topology/cluster.hpp"

namespace paratwin::sim {

/// Time of one compute op on one GPU: flops / (peak(dtype) × eff_compute(kind, dtype, size)) when flops / peak(dtype)
/// ≥ bytes / hbm, else bytes / (hbm × eff_memory(kind, size)); plus the launch overhead and the kind's latency
/// (KernelParams::latency_s). eff_compute is the curve
/// KernelParams::compute_curve picks (fp8 ops on the kind's fp8 curves where the calibration has them).
class ComputeModel {
 public:
  ComputeModel(const GpuSpec& gpu, const ComputeParams& params) : gpu_(gpu), params_(params) {}

  [[nodiscard]] double op_time_s(const ComputeOp& op) const;
  /// The size the efficiency curves of `op.kind` are read at (docs/sim.md, "Compute"): models/efficiency_size.hpp.
  [[nodiscard]] static double curve_size(const ComputeOp& op);
  /// Tensor peak for `dtype` (fp8 ops at the fp8 peak, everything else at the bf16 peak).
  [[nodiscard]] double peak_flops_per_s(DType dtype) const;

 private:
  GpuSpec gpu_;
  ComputeParams params_;
};

}  // namespace paratwin::sim
