#include "traces/error_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "topology/error.hpp"

namespace paratwin {

double relative_error(double predicted_s, double measured_s) {
  if (measured_s == 0) return predicted_s == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return (predicted_s - measured_s) / measured_s;
}

double quantile(std::vector<double> values, double q) {
  PARATWIN_ASSERT(!values.empty(), "quantile of no values");
  PARATWIN_ASSERT(q >= 0 && q <= 1, "quantile {} outside [0, 1]", q);
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return values[below] + fraction * (values[above] - values[below]);
}

ErrorStats error_stats(const std::vector<double>& relative_errors) {
  ErrorStats stats;
  stats.count = relative_errors.size();
  if (relative_errors.empty()) return stats;
  std::vector<double> absolute(relative_errors.size());
  std::transform(relative_errors.begin(), relative_errors.end(), absolute.begin(),
                 [](double e) { return std::abs(e); });
  stats.median = quantile(relative_errors, 0.5);
  stats.median_abs = quantile(absolute, 0.5);
  stats.p90_abs = quantile(absolute, 0.9);
  stats.mape = std::accumulate(absolute.begin(), absolute.end(), 0.0) / static_cast<double>(absolute.size());
  return stats;
}

}  // namespace paratwin
