#include "traces/collective_curve.hpp"

#include "topology/error.hpp"

namespace paratwin {

double CollectiveCurve::seconds_at(double size_bytes) const {
  PARATWIN_ASSERT(!points.empty(), "collective curve {} x{} without points", kind, ranks);
  if (size_bytes <= points.front().first) return points.front().second;
  const auto& [s_last, t_last] = points.back();
  if (size_bytes >= s_last) {
    if (points.size() < 2) return t_last * size_bytes / s_last;
    const auto& [s_prev, t_prev] = points[points.size() - 2];
    const double seconds_per_byte = (t_last - t_prev) / (s_last - s_prev);
    return t_last + (size_bytes - s_last) * (seconds_per_byte > 0 ? seconds_per_byte : t_last / s_last);
  }
  for (std::size_t i = 1; i < points.size(); ++i) {
    if (size_bytes <= points[i].first) {
      const auto [s0, t0] = points[i - 1];
      const auto [s1, t1] = points[i];
      return t0 + (size_bytes - s0) * (t1 - t0) / (s1 - s0);
    }
  }
  return t_last;
}

}  // namespace paratwin
