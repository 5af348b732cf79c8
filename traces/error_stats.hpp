#pragma once
/// Summary statistics of relative errors (docs/compare.md, "Metrics").

#include <cstddef>
#include <vector>

namespace paratwin {

/// Relative error of one duration: (predicted − measured) / measured. A zero measured duration gives 0 when the
/// prediction is zero too, else +∞ (callers exclude zero-length measurements before asking).
[[nodiscard]] double relative_error(double predicted_s, double measured_s);

/// Quantile `q` ∈ [0, 1] of `values` with linear interpolation between closest ranks (NumPy's default, Hyndman–Fan
/// type 7). `values` must not be empty.
[[nodiscard]] double quantile(std::vector<double> values, double q);

struct ErrorStats {
  std::size_t count = 0;
  double median = 0;      ///< median of the signed relative errors (bias: > 0 = the prediction is slow)
  double median_abs = 0;  ///< median of |relative error| (what --tolerance checks)
  double p90_abs = 0;     ///< 90th percentile of |relative error|
  double mape = 0;        ///< mean of |relative error| (a fraction, not per cent)
};

/// Statistics of signed relative errors; all zero when `relative_errors` is empty.
[[nodiscard]] ErrorStats error_stats(const std::vector<double>& relative_errors);

}  // namespace paratwin
