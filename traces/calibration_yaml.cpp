// The calibration YAML writer of traces/calibration_fit.hpp. Plain text rather than a YAML library: the document is
// small, fixed in shape, and must read back through sim/calibration.cpp's loader (tested).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <string>
#include <vector>

#include "traces/calibration_fit.hpp"

namespace paratwin {

std::string calibration_yaml(const CalibrationFit& fit, const std::vector<std::string>& header,
                             CalibrationTarget target) {
  std::string text;
  for (const std::string& line : header) text += fmt::format("# {}\n", line);
  if (!fit.holdout.empty()) {
    text += "# Hold-out error (fit on every other size/shape sorted by size, error on the others):\n";
    for (const HoldoutError& h : fit.holdout) {
      text += fmt::format("#   {:<22} n={:<5} median {:+.2f}%  median|e| {:.2f}%  p90|e| {:.2f}%  MAPE {:.2f}%\n",
                          h.kind, h.stats.count, h.stats.median * 100, h.stats.median_abs * 100, h.stats.p90_abs * 100,
                          h.stats.mape * 100);
    }
  }
  for (const LinkFit& l : fit.links) {
    if (l.latency_at_bound)
      text += fmt::format("# links.{}: the data asked for a negative latency; 0 kept\n", l.link_class);
    if (l.bandwidth_at_bound) {
      text += fmt::format("# links.{}: the data asked for more than the line rate; the line rate kept\n", l.link_class);
    }
  }
  for (const CurveFit& c : fit.curves) {
    if (c.points_at_bound > 0) {
      text += fmt::format("# compute.kernels.{}.{}: {} point(s) ran faster than the peak; efficiency 1 kept\n", c.kind,
                          c.curve, c.points_at_bound);
    }
  }
  for (const std::string& note : fit.notes) text += fmt::format("# not fitted: {}\n", note);

  if (!fit.links.empty() && target == CalibrationTarget::kAlphaBeta) {
    text += "# for the alpha-beta model: paratwin sim --alpha-beta --calibration FILE\n";
    text += "links:\n";
    for (const LinkFit& l : fit.links) {
      text += fmt::format("  {}: {{latency_us: {:.12g}, bandwidth_gb_per_s: {:.12g}}}  # {} calls\n", l.link_class,
                          l.latency_s * 1e6, l.bandwidth_bytes_per_s * 1e-9, l.calls);
    }
  }
  if (!fit.links.empty() && target == CalibrationTarget::kNcclModel) {
    text += "# for the NCCL model (paratwin sim --calibration FILE): fitted bandwidth / line rate as the graph\n";
    text += "# fraction; latencies are not written: NCCL's latency tables are per algorithm and protocol, which a\n";
    text += "# trace does not record. Fitted alpha-beta per link class:\n";
    for (const LinkFit& l : fit.links) {
      text += fmt::format("#   {}: latency {:.12g} us per step, bandwidth {:.12g} GB/s ({} calls)\n", l.link_class,
                          l.latency_s * 1e6, l.bandwidth_bytes_per_s * 1e-9, l.calls);
    }
    text += "nccl:\n";
    for (const LinkFit& l : fit.links) {
      text += fmt::format("  {}_graph_fraction: {:.12g}\n", l.link_class == "nvlink" ? "nvlink" : "net",
                          l.bandwidth_bytes_per_s / l.line_rate_bytes_per_s);
    }
  }
  if (!fit.collectives.empty() && target == CalibrationTarget::kNcclModel) {
    text += "# measured cost curves: single-node calls of these shapes are timed by them, not by the NCCL model\n";
    text += "collectives:\n";
    for (const CollectiveCurve& c : fit.collectives) {
      std::vector<std::string> points;
      for (const auto& [size, seconds] : c.points) points.push_back(fmt::format("[{:.12g}, {:.12g}]", size, seconds * 1e6));
      text += fmt::format("  - {{kind: {}, ranks: {}, time_us: [{}]}}\n", c.kind, c.ranks, fmt::join(points, ", "));
    }
  }
  text += "compute:\n";
  text += fmt::format("  launch_overhead_us: {:.12g}{}\n", fit.launch_overhead_s * 1e6,
                      fit.launch_overhead_fitted ? "  # fitted: the least time a kernel took beyond its work" : "");
  if (!fit.curves.empty()) {
    std::map<std::string, std::vector<const CurveFit*>> by_kind;
    for (const CurveFit& c : fit.curves) by_kind[c.key].push_back(&c);
    text += "  kernels:\n";
    std::map<std::string, double> latency_by_key;  // the file's keys, from the trace kinds
    for (const CurveFit& c : fit.curves) {
      if (const auto it = fit.kind_latency_s.find(c.kind); it != fit.kind_latency_s.end()) {
        latency_by_key[c.key] = it->second;
      }
    }
    for (const auto& [kind, curves] : by_kind) {
      text += fmt::format("    {}:\n", kind);
      if (const auto it = latency_by_key.find(kind); it != latency_by_key.end()) {
        text += fmt::format("      latency_us: {:.12g}  # fitted: beyond the launch overhead, from its latency-bound "
                            "kernels\n",
                            it->second * 1e6);
      }
      for (const CurveFit* c : curves) {
        std::vector<std::string> points;
        for (const auto& [size, efficiency] : c->points)
          points.push_back(fmt::format("[{:.12g}, {:.12g}]", size, efficiency));
        text += fmt::format("      {}: [{}]  # {} kernels\n", c->curve, fmt::join(points, ", "), c->kernels);
      }
    }
  }
  return text;
}

}  // namespace paratwin
