#include "traces/alpha_beta_fit.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "topology/error.hpp"

namespace paratwin {
namespace {

double objective(const std::vector<AlphaBetaSample>& samples, double alpha, double g) {
  double sum = 0;
  for (const auto& s : samples) {
    const double r = (s.steps * alpha + s.traffic_bytes * g - s.time_s) / s.time_s;
    sum += r * r;
  }
  return sum;
}

}  // namespace

bool fit_alpha_beta(const std::vector<AlphaBetaSample>& samples, double max_bandwidth_bytes_per_s, AlphaBeta& out) {
  PARATWIN_ASSERT(max_bandwidth_bytes_per_s > 0, "line rate must be positive, got {}", max_bandwidth_bytes_per_s);
  // Both terms are identifiable only when two samples have different steps/traffic ratios.
  bool varied = false;
  for (const auto& s : samples) {
    PARATWIN_ASSERT(s.time_s > 0, "alpha-beta sample with time {}", s.time_s);
    varied = varied || std::abs(s.steps * samples.front().traffic_bytes - s.traffic_bytes * samples.front().steps) >
                           1e-9 * std::max(1.0, s.steps * samples.front().traffic_bytes);
  }
  if (samples.size() < 2 || !varied) return false;

  const double g_min = 1.0 / max_bandwidth_bytes_per_s;
  // The problem is a convex quadratic over the box α ≥ 0, g ≥ g_min: its optimum is the unconstrained one, the
  // optimum on one face, or the corner. Every candidate is made feasible and the best is kept.
  Eigen::MatrixXd a(static_cast<Eigen::Index>(samples.size()), 2);
  Eigen::VectorXd b(static_cast<Eigen::Index>(samples.size()));
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto row = static_cast<Eigen::Index>(i);
    a(row, 0) = samples[i].steps / samples[i].time_s;
    a(row, 1) = samples[i].traffic_bytes / samples[i].time_s;
    b(row) = 1.0;
  }
  const Eigen::Vector2d free = a.colPivHouseholderQr().solve(b);
  struct Candidate {
    double alpha, g;
  };
  // On the face α = 0: argmin over g of Σ (traffic·g/t − 1)²; on the face g = g_min: argmin over α.
  double g_num = 0, g_den = 0, alpha_num = 0, alpha_den = 0;
  for (const auto& s : samples) {
    const double traffic = s.traffic_bytes / s.time_s;
    const double steps = s.steps / s.time_s;
    g_num += traffic;
    g_den += traffic * traffic;
    alpha_num += steps * (1.0 - traffic * g_min);
    alpha_den += steps * steps;
  }
  const double g_on_alpha_zero = g_den > 0 ? std::max(g_min, g_num / g_den) : g_min;
  const double alpha_on_g_min = alpha_den > 0 ? std::max(0.0, alpha_num / alpha_den) : 0.0;
  const Candidate candidates[] = {{free(0), free(1)}, {0.0, g_on_alpha_zero}, {alpha_on_g_min, g_min}, {0.0, g_min}};
  double best = std::numeric_limits<double>::infinity();
  Candidate chosen{0, g_min};
  for (const Candidate& c : candidates) {
    if (!(c.alpha >= 0 && c.g >= g_min) || !std::isfinite(c.alpha) || !std::isfinite(c.g)) continue;
    const double value = objective(samples, c.alpha, c.g);
    if (value < best) {
      best = value;
      chosen = c;
    }
  }
  out.latency_s = chosen.alpha;
  out.bandwidth_bytes_per_s = 1.0 / chosen.g;
  out.latency_at_bound = free(0) < 0;
  out.bandwidth_at_bound = free(1) < g_min;
  return true;
}

}  // namespace paratwin
