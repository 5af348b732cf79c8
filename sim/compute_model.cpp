#include "sim/compute_model.hpp"

#include <algorithm>

#include "models/efficiency_size.hpp"
#include "topology/error.hpp"

namespace paratwin::sim {

double ComputeModel::peak_flops_per_s(DType dtype) const {
  return dtype == DType::kFp8 ? gpu_.fp8_flops : gpu_.bf16_flops;
}

double ComputeModel::curve_size(const ComputeOp& op) {
  return efficiency_curve_size(op);
}

double ComputeModel::op_time_s(const ComputeOp& op) const {
  if (op.flops < 0 || op.bytes < 0) fail("compute op with negative cost (flops {}, bytes {})", op.flops, op.bytes);
  const KernelParams& k = params_.of(op.kind);
  const double size = curve_size(op);
  const bool causal = op.shape.causal && !k.causal_compute_efficiency.points.empty();
  const double eff_compute = causal ? k.causal_compute_efficiency.at(size) : k.compute_efficiency.at(size);
  const double eff_memory = k.memory_efficiency.at(size);
  const double compute_s = op.flops > 0 ? op.flops / (peak_flops_per_s(op.dtype) * eff_compute) : 0.0;
  const double memory_s = op.bytes > 0 ? op.bytes / (gpu_.hbm_bytes_per_s * eff_memory) : 0.0;
  return std::max(compute_s, memory_s) + params_.launch_overhead_s;
}

}  // namespace paratwin::sim
