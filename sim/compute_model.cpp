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
  const double eff_compute = k.compute_curve(op.dtype, op.shape.causal).at(size);
  const double eff_memory = k.memory_efficiency.at(size);
  // The op's regime is its slower roofline term at full efficiency, and only that regime's efficiency applies: so
  // calibration fits them (traces/calibration_fit.cpp), one regime's kernels per curve. A memory efficiency fitted on
  // small, latency-bound GEMMs (a few percent of HBM) must not price a large compute-bound GEMM's bytes.
  const double compute_peak_s = op.flops > 0 ? op.flops / peak_flops_per_s(op.dtype) : 0.0;
  const double memory_peak_s = op.bytes > 0 ? op.bytes / gpu_.hbm_bytes_per_s : 0.0;
  const double work_s = compute_peak_s >= memory_peak_s ? compute_peak_s / eff_compute : memory_peak_s / eff_memory;
  return work_s + params_.launch_overhead_s + k.latency_s;
}

}  // namespace paratwin::sim
