#pragma once
// Synthetic measured traces made from known α-β and efficiencies, for the calibration fit tests.

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "traces/calibration_fit.hpp"
#include "traces/collective_bandwidth.hpp"
#include "traces/trace.hpp"

namespace paratwin::test {

/// H200-like physics (the numbers only need to be consistent between generator and fit).
inline FitInputs test_fit_inputs(bool holdout = false) {
  FitInputs in;
  in.bf16_flops_per_s = 989.4e12;
  in.fp8_flops_per_s = 1978.9e12;
  in.hbm_bytes_per_s = 4.8e12;
  in.nvlink_line_rate_bytes_per_s = 450e9;
  in.network_line_rate_bytes_per_s = 50e9;
  in.launch_overhead_s = 0.9e-6;
  in.compute_kinds = {{"gemm", "gemm"}, {"rms_norm", "rms_norm"}, {"attention", "attention"}, {"topk", "top_k"}};
  in.holdout = holdout;
  return in;
}

/// Multiplies times by 1 + u, u uniform in [−amplitude, amplitude], from a fixed seed.
class Noise {
 public:
  Noise(double amplitude, unsigned seed) : amplitude_(amplitude), engine_(seed) {}
  double operator()(double t) {
    return amplitude_ == 0 ? t : t * (1 + std::uniform_real_distribution<double>(-amplitude_, amplitude_)(engine_));
  }

 private:
  double amplitude_;
  std::mt19937 engine_;
};

/// Trace metadata of a measured trace.
inline Trace empty_measured_trace() {
  Trace t;
  t.meta.backend = "cuda";
  t.meta.schedule_hash = "bench";
  t.meta.model = "bench";
  t.meta.cluster = "h200-sxm 1x2";
  return t;
}

/// Adds one call of `kind` over ranks 0..n−1 (one node each when `cross_node`), taking `time_s` on every member,
/// after everything already in the trace.
inline void add_call(Trace& t, const std::string& kind, int n, std::int64_t bytes, double time_s, bool cross_node) {
  double start = 0;
  for (const Event& e : t.events) start = std::max(start, e.end_s);
  const int op = static_cast<int>(t.events.size());  // unique per rank as each call adds to every rank
  for (int r = 0; r < n; ++r) {
    Event e;
    e.rank = r;
    e.node = cross_node ? r : 0;
    e.op = op;
    e.name = fmt::format("call{}", op);
    e.stream = "comm";
    e.kind = kind;
    e.group = fmt::format("bench[{}]", n);
    e.group_size = n;
    e.bytes = bytes;
    e.start_s = start;
    e.end_s = start + time_s;
    t.events.push_back(e);
  }
}

/// Adds one kernel on rank 0 after everything already in the trace.
inline void add_kernel(Trace& t, const std::string& kind, double size, double flops, double bytes, double time_s,
                       std::string dtype = "bf16") {
  double start = 0;
  for (const Event& e : t.events) start = std::max(start, e.end_s);
  Event e;
  e.op = static_cast<int>(t.events.size());
  e.name = fmt::format("kernel{}", e.op);
  e.stream = "compute";
  e.kind = kind;
  e.size = size;
  e.dtype = std::move(dtype);
  e.flops = flops;
  e.bytes = static_cast<std::int64_t>(bytes);
  e.start_s = start;
  e.end_s = start + time_s;
  t.events.push_back(e);
}

/// α-β model time of a call, as the fit defines it (ring steps, nccl-tests traffic).
inline double alpha_beta_time(const std::string& kind, int n, std::int64_t bytes, double alpha_s, double bandwidth) {
  Event e;
  e.kind = kind;
  e.group_size = n;
  e.bytes = bytes;
  const double steps = kind == "all_reduce" ? 2.0 * (n - 1) : kind == "all_to_all" || kind == "send" ? 1.0 : n - 1.0;
  return steps * alpha_s + nccl_tests_size_bytes(e) * bus_bandwidth_factor(kind, n) / bandwidth;
}

/// A sweep of all_gather and all_reduce over 2 ranks, 4 KiB to 1 GiB in ×4 steps.
inline void add_collective_sweep(Trace& t, double alpha_s, double bandwidth, Noise& noise, bool cross_node = false) {
  for (std::int64_t bytes = 4096; bytes <= (std::int64_t{1} << 30); bytes *= 4) {
    for (const char* kind : {"all_gather", "all_reduce"}) {
      add_call(t, kind, 2, bytes, noise(alpha_beta_time(kind, 2, bytes, alpha_s, bandwidth)), cross_node);
    }
  }
}

/// GEMMs of m = 64 … 8192 rows (n = k = 4096) in `dtype` with efficiency `efficiency(m)` of the dtype's peak.
inline void add_gemm_sweep(Trace& t, const std::function<double(double)>& efficiency, const FitInputs& in, Noise& noise,
                           const std::string& dtype = "bf16") {
  const double peak = dtype == "fp8" ? in.fp8_flops_per_s : in.bf16_flops_per_s;
  for (double m = 64; m <= 8192; m *= 2) {
    const double flops = 2 * m * 4096 * 4096;
    const double bytes = 2 * m * 4096 * 2;  // activations only: compute bound at every m
    add_kernel(t, "gemm", m, flops, bytes, noise(flops / (peak * efficiency(m)) + in.launch_overhead_s), dtype);
  }
}

}  // namespace paratwin::test
