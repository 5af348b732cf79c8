#include "traces/calibration_fit.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "topology/error.hpp"
#include "traces/alpha_beta_fit.hpp"
#include "traces/collective_bandwidth.hpp"
#include "traces/op_instances.hpp"

namespace paratwin {
namespace {

// ---- communication ----

struct CallSample {
  std::string link_class, kind;
  int group_size = 0;
  double size_bytes = 0;  ///< nccl-tests S
  AlphaBetaSample sample;
};

// Latency terms of one call in the ring closed forms (docs/sim.md §3): a ring all-gather or reduce-scatter takes
// n−1 steps, an all-reduce 2(n−1), a pipelined broadcast chain n−1; all-to-all and send/recv post all their
// transfers at once (one latency).
double latency_steps(const std::string& kind, int group_size) {
  const double n = std::max(group_size, 2);
  if (kind == "all_reduce") return 2 * (n - 1);
  if (kind == "all_gather" || kind == "reduce_scatter" || kind == "broadcast") return n - 1;
  return 1;
}

std::vector<CallSample> call_samples(const Trace& trace, std::set<std::string>& notes) {
  std::vector<CallSample> out;
  const OpInstances instances = find_op_instances(trace);
  std::set<int> nodes_of_trace;
  for (const Event& e : trace.events) nodes_of_trace.insert(e.node);
  for (std::size_t k = 0; k < instances.members.size(); ++k) {
    const Event& e = trace.events[instances.latest_arrival[k]];
    if (!is_communication_kind(e.kind)) continue;
    const double time_s = e.end_s - e.start_s;  // the last arrival never waits for a peer
    if (!(time_s > 0) || e.bytes <= 0) continue;
    std::string link_class;
    if (!e.group.empty()) {
      std::set<int> nodes;
      for (const std::size_t m : instances.members[k]) nodes.insert(trace.events[m].node);
      link_class = nodes.size() > 1 ? "network" : "nvlink";
    } else if (nodes_of_trace.size() == 1) {
      link_class = "nvlink";
    } else {
      notes.insert("send/recv in multi-node traces: the trace does not name the peer, so the link class is unknown");
      continue;
    }
    CallSample s;
    s.link_class = link_class;
    s.kind = e.kind;
    s.group_size = e.group_size;
    s.size_bytes = nccl_tests_size_bytes(e);
    s.sample = {latency_steps(e.kind, e.group_size), s.size_bytes * bus_bandwidth_factor(e.kind, e.group_size), time_s};
    out.push_back(std::move(s));
  }
  return out;
}

double predict(const LinkFit& link, const AlphaBetaSample& s) {
  return s.steps * link.latency_s + s.traffic_bytes / link.bandwidth_bytes_per_s;
}

// ---- compute ----

struct KernelSample {
  std::string kind, curve;
  double size = 0;    ///< where the curve is read
  double work_s = 0;  ///< the kernel's time at efficiency 1 in its regime
  double time_s = 0;
};

std::vector<KernelSample> kernel_samples(const Trace& trace, const FitInputs& in, std::set<std::string>& notes) {
  std::vector<KernelSample> out;
  for (const Event& e : trace.events) {
    if (e.stream != "compute" || is_communication_kind(e.kind)) continue;
    if (!in.compute_kinds.count(e.kind)) {
      notes.insert(fmt::format("compute kind '{}': not a kind of the calibration file", e.kind));
      continue;
    }
    const double time_s = e.end_s - e.start_s;
    if (!(time_s > 0) || (e.flops <= 0 && e.bytes <= 0)) continue;
    if (e.size <= 0) {
      notes.insert(
          fmt::format("compute kind '{}': events without 'size' read at size 1 (one efficiency point)", e.kind));
    }
    if (e.dtype.empty()) {
      notes.insert(fmt::format("compute kind '{}': events without 'dtype' assumed bf16 (the bf16 peak)", e.kind));
    }
    // The compute model takes the slower of its two roofline terms; the regime is decided at efficiency 1.
    const double peak = e.dtype == "fp8" ? in.fp8_flops_per_s : in.bf16_flops_per_s;
    const double compute_s = e.flops / peak;
    const double memory_s = static_cast<double>(e.bytes) / in.hbm_bytes_per_s;
    KernelSample s;
    s.kind = e.kind;
    s.size = std::max(e.size, 1.0);
    s.time_s = time_s;
    if (compute_s >= memory_s) {
      // fp8 kernels get curves of their own, which the sim reads for fp8 ops: block-scaled fp8 GEMMs reach a smaller
      // fraction of the fp8 peak than bf16 GEMMs of the bf16 peak. Bytes are bytes: one memory curve for every dtype.
      s.curve =
          std::string(e.dtype == "fp8" ? "fp8_" : "") + (e.causal ? "causal_compute_efficiency" : "compute_efficiency");
      s.work_s = compute_s;
    } else {
      s.curve = "memory_efficiency";
      s.work_s = memory_s;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Efficiency at one size: t − launch = work / e, fitted as u = 1/e by least squares on relative residuals
// (closed form of the one-unknown normal equation), then kept physical: 0 < e ≤ 1.
std::pair<double, bool> fit_efficiency(const std::vector<const KernelSample*>& samples, double launch_s) {
  double num = 0, den = 0;
  for (const KernelSample* s : samples) {
    const double w = s->work_s / s->time_s;
    num += w * (s->time_s - launch_s) / s->time_s;
    den += w * w;
  }
  const double u = den > 0 ? num / den : 1.0;
  if (u <= 1.0) return {1.0, true};  // faster than the peak (or than the launch overhead): efficiency 1 kept
  return {1.0 / u, false};
}

CurveFit fit_curve(const std::string& kind, const std::string& key, const std::string& curve,
                   const std::vector<const KernelSample*>& samples, double launch_s) {
  std::map<double, std::vector<const KernelSample*>> by_size;
  for (const KernelSample* s : samples) by_size[s->size].push_back(s);
  CurveFit fit;
  fit.kind = kind;
  fit.key = key;
  fit.curve = curve;
  fit.kernels = samples.size();
  for (const auto& [size, at_size] : by_size) {
    const auto [efficiency, at_bound] = fit_efficiency(at_size, launch_s);
    fit.points.emplace_back(size, efficiency);
    fit.points_at_bound += at_bound ? 1 : 0;
  }
  return fit;
}

// The hold-out report's row of a curve's kernels: the kind, and its fp8 compute curves as a row of their own.
std::string holdout_row(const std::string& kind, const std::string& curve) {
  return curve.starts_with("fp8_") ? kind + " (fp8)" : kind;
}

double predict(const CurveFit& curve, const KernelSample& s, double launch_s) {
  return s.work_s / curve_at(curve.points, s.size) + launch_s;
}

// The fixed cost per kernel of each kind beyond `launch_s`, from its latency-bound kernels among `kernels` (the least
// time one of them took beyond its work, less the launch overhead; ≥ 0); kinds without one are left out.
std::map<std::string, double> kind_latencies_s(const std::vector<const KernelSample*>& kernels, double launch_s) {
  std::map<std::string, double> least_s;
  for (const KernelSample* k : kernels) {
    if (k->work_s >= kLatencyBoundWorkFraction * k->time_s) continue;
    const double beyond_s = std::max(k->time_s - k->work_s - launch_s, 0.0);
    const auto [it, added] = least_s.emplace(k->kind, beyond_s);
    if (!added) it->second = std::min(it->second, beyond_s);
  }
  return least_s;
}

double latency_of(const std::map<std::string, double>& latencies_s, const std::string& kind) {
  const auto it = latencies_s.find(kind);
  return it == latencies_s.end() ? 0.0 : it->second;
}

constexpr double kLargeCallBytes = 1 << 20;

// FitInputs::fit_launch_overhead's fit over `kernels`: the least time any of them took beyond its work at efficiency 1
// (≥ 0). The least, not a typical value: every kernel then keeps a positive remainder for its curve (t − launch ≥
// work), and the sweep's one-row kernels, whose work is nanoseconds, put it at the fixed cost they all pay.
double least_overhead_s(const std::vector<const KernelSample*>& kernels) {
  PARATWIN_ASSERT(!kernels.empty(), "launch overhead of no kernel");
  double least_s = kernels.front()->time_s - kernels.front()->work_s;
  for (const KernelSample* k : kernels) least_s = std::min(least_s, k->time_s - k->work_s);
  return std::max(least_s, 0.0);
}

double median_of(std::vector<double> values) {
  PARATWIN_ASSERT(!values.empty(), "median of nothing");
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

// Splits sorted distinct keys into every other one: even positions fit, odd positions are held out. The largest
// key fits too, so every held-out size lies between fitted ones: a curve is tested on interpolation, never on
// extrapolation (where it is clamped to its last point).
template <typename Key>
std::set<Key> fitting_half(const std::set<Key>& keys) {
  std::set<Key> out;
  std::size_t i = 0;
  for (const Key& k : keys) {
    if (i++ % 2 == 0) out.insert(k);
  }
  if (!keys.empty()) out.insert(*keys.rbegin());
  return out;
}

void check_inputs(const FitInputs& in) {
  if (!(in.bf16_flops_per_s > 0) || !(in.fp8_flops_per_s > 0) || !(in.hbm_bytes_per_s > 0)) {
    fail("calibrate: the cluster's GPU needs positive bf16/fp8 peaks and HBM bandwidth");
  }
  if (!(in.nvlink_line_rate_bytes_per_s > 0) || !(in.network_line_rate_bytes_per_s > 0)) {
    fail("calibrate: the cluster needs positive NVLink and NIC line rates (the fitted bandwidths' bounds)");
  }
  if (!(in.launch_overhead_s >= 0)) fail("calibrate: the launch overhead must be ≥ 0, got {}", in.launch_overhead_s);
}

}  // namespace

double curve_at(const std::vector<std::pair<double, double>>& points, double size) {
  PARATWIN_ASSERT(!points.empty(), "efficiency curve without points");
  if (size <= points.front().first) return points.front().second;
  if (size >= points.back().first) return points.back().second;
  for (std::size_t i = 1; i < points.size(); ++i) {
    if (size <= points[i].first) {
      const auto [x0, y0] = points[i - 1];
      const auto [x1, y1] = points[i];
      const double t = (std::log2(size) - std::log2(x0)) / (std::log2(x1) - std::log2(x0));
      return y0 + t * (y1 - y0);
    }
  }
  return points.back().second;
}

CalibrationFit fit_calibration(const std::vector<Trace>& traces, const FitInputs& in) {
  check_inputs(in);
  if (traces.empty()) fail("calibrate: give at least one measured trace");
  std::set<std::string> notes;
  std::vector<CallSample> calls;
  std::vector<KernelSample> kernels;
  for (const Trace& trace : traces) {
    if (trace.foreign) fail("calibrate: a foreign trace has no op costs (bytes, flops) to fit to");
    auto c = call_samples(trace, notes);
    calls.insert(calls.end(), c.begin(), c.end());
    auto k = kernel_samples(trace, in, notes);
    kernels.insert(kernels.end(), k.begin(), k.end());
  }
  if (calls.empty() && kernels.empty()) {
    fail("calibrate: the traces hold no communication call or compute kernel with a positive time and size");
  }

  CalibrationFit fit;
  fit.launch_overhead_s = in.launch_overhead_s;
  if (in.fit_launch_overhead) {
    if (kernels.empty()) {
      notes.insert(fmt::format("launch overhead: no compute kernel to fit it from; kept at {:g} us",
                               in.launch_overhead_s * 1e6));
    } else {
      std::vector<const KernelSample*> all;
      for (const KernelSample& k : kernels) all.push_back(&k);
      fit.launch_overhead_s = least_overhead_s(all);
      fit.launch_overhead_fitted = true;
      fit.kind_latency_s = kind_latencies_s(all, fit.launch_overhead_s);
    }
  }
  const double launch_s = fit.launch_overhead_s;
  fit.communication_calls = calls.size();
  fit.compute_kernels = kernels.size();
  std::map<std::string, std::vector<double>> holdout_errors;

  // Links.
  for (const std::string link_class : {"nvlink", "network"}) {
    const double line_rate =
        link_class == "nvlink" ? in.nvlink_line_rate_bytes_per_s : in.network_line_rate_bytes_per_s;
    std::vector<const CallSample*> samples;
    for (const CallSample& c : calls) {
      if (c.link_class == link_class) samples.push_back(&c);
    }
    if (samples.empty()) {
      notes.insert(fmt::format("links.{}: no communication over this link class in the traces", link_class));
      continue;
    }
    const auto fit_on = [&](const std::vector<const CallSample*>& subset, LinkFit& out) {
      std::vector<AlphaBetaSample> raw;
      for (const CallSample* c : subset) raw.push_back(c->sample);
      AlphaBeta ab;
      if (!fit_alpha_beta(raw, line_rate, ab)) return false;
      out.link_class = link_class;
      out.latency_s = ab.latency_s;
      out.bandwidth_bytes_per_s = ab.bandwidth_bytes_per_s;
      out.line_rate_bytes_per_s = line_rate;
      out.latency_at_bound = ab.latency_at_bound;
      out.bandwidth_at_bound = ab.bandwidth_at_bound;
      out.calls = subset.size();
      return true;
    };
    LinkFit link;
    if (!fit_on(samples, link)) {
      notes.insert(fmt::format("links.{}: one message shape only; latency and bandwidth need two", link_class));
      continue;
    }
    fit.links.push_back(link);
    if (!in.holdout) continue;
    // Every other message size within each (kind, group size) series, so every kind is both fitted and tested.
    std::map<std::pair<std::string, int>, std::set<double>> sizes_by_series;
    for (const CallSample* c : samples) sizes_by_series[{c->kind, c->group_size}].insert(c->size_bytes);
    std::map<std::pair<std::string, int>, std::set<double>> fitting;
    for (const auto& [series, sizes] : sizes_by_series) fitting[series] = fitting_half(sizes);
    std::vector<const CallSample*> train, test;
    for (const CallSample* c : samples) {
      (fitting[{c->kind, c->group_size}].count(c->size_bytes) ? train : test).push_back(c);
    }
    LinkFit held;
    if (test.empty() || !fit_on(train, held)) {
      notes.insert(fmt::format("hold-out links.{}: too few message shapes to fit on half of them", link_class));
      continue;
    }
    for (const CallSample* c : test) {
      holdout_errors[c->kind].push_back(relative_error(predict(held, c->sample), c->sample.time_s));
    }
  }

  // Collective curves: a point per size, the median over the calls of that size; their hold-out error (interpolating
  // between every other size) replaces the α-β one for their kinds, as the simulator then times those shapes by them.
  // A send and its recv are one transfer: both sides' times go to the curve of kind "send".
  struct Timed {
    double time_s;
    std::string kind;  ///< the event's own kind, for the hold-out report
  };
  std::map<std::pair<std::string, int>, std::map<double, std::vector<Timed>>> times_by_shape;
  for (const CallSample& c : calls) {
    if (c.link_class != "nvlink") continue;
    const std::string curve_kind = c.kind == "recv" ? "send" : c.kind;
    times_by_shape[{curve_kind, c.group_size}][c.size_bytes].push_back({c.sample.time_s, c.kind});
  }
  std::map<std::string, std::vector<double>> curve_errors;
  for (const auto& [shape, times_by_size] : times_by_shape) {
    const auto& [kind, ranks] = shape;
    if (times_by_size.size() < 2) {
      notes.insert(fmt::format("collectives {} x{}: one size only; a curve needs two", kind, ranks));
      continue;
    }
    CollectiveCurve curve{kind, ranks, {}};
    std::set<double> sizes;
    for (const auto& [size, timed] : times_by_size) {
      std::vector<double> times;
      for (const Timed& t : timed) times.push_back(t.time_s);
      curve.points.emplace_back(size, median_of(std::move(times)));
      sizes.insert(size);
    }
    fit.collectives.push_back(curve);
    if (!in.holdout) continue;
    if (sizes.size() < 3) {
      notes.insert(fmt::format("hold-out collectives {} x{}: fewer than three sizes", kind, ranks));
      continue;
    }
    const std::set<double> fitting = fitting_half(sizes);
    CollectiveCurve held{kind, ranks, {}};
    for (const auto& point : curve.points) {
      if (fitting.count(point.first)) held.points.push_back(point);
    }
    for (const auto& [size, timed] : times_by_size) {
      if (fitting.count(size)) continue;
      for (const Timed& t : timed) {
        const double error = relative_error(held.seconds_at(size), t.time_s);
        curve_errors[t.kind].push_back(error);
        // The accuracy goals are stated for calls of 1 MiB and more apart (docs/accuracy.md).
        if (size >= kLargeCallBytes) curve_errors[t.kind + " >= 1 MiB"].push_back(error);
      }
    }
  }
  for (auto& [kind, errors] : curve_errors) holdout_errors[kind] = std::move(errors);

  // Efficiency curves, and their hold-out: each curve fitted on every other size (a fitted launch overhead on every
  // kernel but the held-out ones), the error taken on the rest.
  std::map<std::pair<std::string, std::string>, std::vector<const KernelSample*>> by_curve;
  for (const KernelSample& k : kernels) by_curve[{k.kind, k.curve}].push_back(&k);
  struct HeldOut {
    std::string kind, curve;
    std::vector<const KernelSample*> train, test;
  };
  std::vector<HeldOut> held_out;
  for (const auto& [key, samples] : by_curve) {
    const auto& [kind, curve] = key;
    fit.curves.push_back(
        fit_curve(kind, in.compute_kinds.at(kind), curve, samples, launch_s + latency_of(fit.kind_latency_s, kind)));
    if (!in.holdout) continue;
    std::set<double> sizes;
    for (const KernelSample* s : samples) sizes.insert(s->size);
    if (sizes.size() < 3) {
      notes.insert(
          fmt::format("hold-out {}.{}: fewer than three sizes, none to hold out between fitted ones", kind, curve));
      continue;
    }
    const std::set<double> fitting = fitting_half(sizes);
    HeldOut h{kind, curve, {}, {}};
    for (const KernelSample* s : samples) (fitting.count(s->size) ? h.train : h.test).push_back(s);
    held_out.push_back(std::move(h));
  }
  double held_launch_s = launch_s;
  std::map<std::string, double> held_latencies_s = fit.kind_latency_s;
  if (fit.launch_overhead_fitted && !held_out.empty()) {  // from every kernel but the held-out ones
    std::set<const KernelSample*> tested;
    for (const HeldOut& h : held_out) tested.insert(h.test.begin(), h.test.end());
    std::vector<const KernelSample*> train;
    for (const KernelSample& k : kernels) {
      if (!tested.count(&k)) train.push_back(&k);
    }
    held_launch_s = least_overhead_s(train);
    held_latencies_s = kind_latencies_s(train, held_launch_s);
  }
  for (const HeldOut& h : held_out) {
    const double fixed_s = held_launch_s + latency_of(held_latencies_s, h.kind);
    const CurveFit held = fit_curve(h.kind, in.compute_kinds.at(h.kind), h.curve, h.train, fixed_s);
    for (const KernelSample* s : h.test) {
      holdout_errors[holdout_row(h.kind, h.curve)].push_back(relative_error(predict(held, *s, fixed_s), s->time_s));
    }
  }
  for (const auto& [kind, file_key] : in.compute_kinds) {
    bool seen = false;
    for (const KernelSample& k : kernels) seen = seen || k.kind == kind;
    if (!seen && !kernels.empty()) notes.insert(fmt::format("compute.kernels.{}: no kernel of this kind", file_key));
  }
  if (kernels.empty()) notes.insert("compute.kernels: no compute kernel in the traces");
  for (const auto& [kind, errors] : holdout_errors) fit.holdout.push_back({kind, error_stats(errors)});
  fit.notes.assign(notes.begin(), notes.end());
  return fit;
}

}  // namespace paratwin
