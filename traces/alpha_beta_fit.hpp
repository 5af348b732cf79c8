#pragma once
/// Constrained least squares for t = steps·α + traffic / B (docs/compare.md, "Calibration").

#include <vector>

namespace paratwin {

struct AlphaBetaSample {
  double steps = 0;          ///< latency terms of the call
  double traffic_bytes = 0;  ///< bytes through the busiest link: nccl-tests S × busbw factor
  double time_s = 0;         ///< measured, > 0
};

struct AlphaBeta {
  double latency_s = 0;
  double bandwidth_bytes_per_s = 0;
  bool latency_at_bound = false;    ///< unconstrained optimum had α < 0
  bool bandwidth_at_bound = false;  ///< unconstrained optimum had B > max_bandwidth (or ≤ 0)
};

/// Minimises Σ ((steps·α + traffic·g − t) / t)² (relative residuals, so microsecond calls weigh as much as
/// millisecond ones) over α ≥ 0 and g = 1/B ≥ 1/max_bandwidth. Needs two samples with different steps/traffic
/// ratios for both terms to be determined; returns false when they are not.
[[nodiscard]] bool fit_alpha_beta(const std::vector<AlphaBetaSample>& samples, double max_bandwidth_bytes_per_s,
                                  AlphaBeta& out);

}  // namespace paratwin
