#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <string>

#include "tests/traces/calibration_test_data.hpp"
#include "topology/error.hpp"
#include "traces/alpha_beta_fit.hpp"
#include "traces/calibration_fit.hpp"

using paratwin::CalibrationFit;
using paratwin::FitInputs;
using paratwin::Trace;
using namespace paratwin::test;

namespace {

constexpr double kAlphaS = 2.5e-6;
constexpr double kBandwidth = 360e9;

double gemm_efficiency(double m) {
  return 0.3 + 0.05 * std::log2(m / 64);  // linear in log2(m), like the sim's curves
}

const paratwin::CurveFit& curve(const CalibrationFit& fit, const std::string& kind, const std::string& name) {
  for (const auto& c : fit.curves) {
    if (c.kind == kind && c.curve == name) return c;
  }
  FAIL("no curve " << kind << "." << name);
  return fit.curves.front();
}

// A fit of noise-free kernels: the GEMM curve as the sweep made it, and every held-out kernel predicted as it was made.
void check_gemm_curve_and_holdout(const CalibrationFit& fit) {
  for (const auto& [m, efficiency] : curve(fit, "gemm", "compute_efficiency").points) {
    CHECK(efficiency == Approx(gemm_efficiency(m)).epsilon(1e-3));
  }
  REQUIRE_FALSE(fit.holdout.empty());
  for (const auto& h : fit.holdout) {
    INFO(h.kind);
    CHECK(h.stats.median_abs < 1e-3);
  }
}

bool has_note(const CalibrationFit& fit, const std::string& text) {
  for (const auto& note : fit.notes) {
    if (note.find(text) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("calibration recovers known alpha-beta and efficiencies exactly without noise", "[traces][calibrate]") {
  const FitInputs in = test_fit_inputs();
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  add_collective_sweep(t, kAlphaS, kBandwidth, none);
  add_gemm_sweep(t, gemm_efficiency, in, none);
  for (double bytes = 1 << 20; bytes <= (1 << 26); bytes *= 4) {
    add_kernel(t, "rms_norm", bytes, bytes / 4, bytes, bytes / (in.hbm_bytes_per_s * 0.87) + in.launch_overhead_s);
  }
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.links.size() == 1);
  CHECK(fit.links[0].link_class == "nvlink");
  CHECK(fit.links[0].latency_s == Approx(kAlphaS).epsilon(1e-9));
  CHECK(fit.links[0].bandwidth_bytes_per_s == Approx(kBandwidth).epsilon(1e-9));
  CHECK_FALSE(fit.links[0].latency_at_bound);
  CHECK_FALSE(fit.links[0].bandwidth_at_bound);
  const auto& gemm = curve(fit, "gemm", "compute_efficiency");
  REQUIRE(gemm.points.size() == 8);
  for (const auto& [m, efficiency] : gemm.points) CHECK(efficiency == Approx(gemm_efficiency(m)).epsilon(1e-9));
  const auto& norm = curve(fit, "rms_norm", "memory_efficiency");
  for (const auto& point : norm.points) CHECK(point.second == Approx(0.87).epsilon(1e-9));
  CHECK(has_note(fit, "links.network: no communication"));
  CHECK(has_note(fit, "compute.kernels.attention: no kernel"));
}

TEST_CASE("calibration recovers known parameters within tolerance under 2 percent noise", "[traces][calibrate]") {
  const FitInputs in = test_fit_inputs();
  Noise noise(0.02, 20261128);
  Trace t = empty_measured_trace();
  // Three repetitions of each sweep, as a benchmark would measure.
  for (int rep = 0; rep < 3; ++rep) {
    add_collective_sweep(t, kAlphaS, kBandwidth, noise);
    add_gemm_sweep(t, gemm_efficiency, in, noise);
  }
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.links.size() == 1);
  CHECK(fit.links[0].latency_s == Approx(kAlphaS).epsilon(0.03));
  CHECK(fit.links[0].bandwidth_bytes_per_s == Approx(kBandwidth).epsilon(0.01));
  for (const auto& [m, efficiency] : curve(fit, "gemm", "compute_efficiency").points) {
    CHECK(efficiency == Approx(gemm_efficiency(m)).epsilon(0.02));
  }
}

TEST_CASE("calibration keeps bandwidth at most the line rate and latency at least zero", "[traces][calibrate]") {
  FitInputs in = test_fit_inputs();
  Noise none(0, 1);
  SECTION("faster than the line rate") {
    Trace t = empty_measured_trace();
    add_collective_sweep(t, kAlphaS, 1.3 * in.nvlink_line_rate_bytes_per_s, none);
    const CalibrationFit fit = paratwin::fit_calibration({t}, in);
    REQUIRE(fit.links.size() == 1);
    CHECK(fit.links[0].bandwidth_bytes_per_s == Approx(in.nvlink_line_rate_bytes_per_s).epsilon(1e-12));
    CHECK(fit.links[0].bandwidth_at_bound);
    CHECK(fit.links[0].latency_s >= 0);
  }
  SECTION("negative latency") {
    Trace t = empty_measured_trace();
    for (std::int64_t bytes = 1 << 24; bytes <= (std::int64_t{1} << 30); bytes *= 4) {
      add_call(t, "all_gather", 2, bytes, alpha_beta_time("all_gather", 2, bytes, -5e-6, kBandwidth), false);
    }
    const CalibrationFit fit = paratwin::fit_calibration({t}, in);
    REQUIRE(fit.links.size() == 1);
    CHECK(fit.links[0].latency_s == 0);
    CHECK(fit.links[0].latency_at_bound);
    CHECK(fit.links[0].bandwidth_bytes_per_s <= in.nvlink_line_rate_bytes_per_s);
  }
  SECTION("kernels faster than the peak") {
    Trace t = empty_measured_trace();
    add_gemm_sweep(
        t, [](double) { return 1.4; }, in, none);
    const CalibrationFit fit = paratwin::fit_calibration({t}, in);
    const auto& gemm = curve(fit, "gemm", "compute_efficiency");
    CHECK(gemm.points_at_bound == gemm.points.size());
    for (const auto& point : gemm.points) CHECK(point.second == 1.0);
  }
}

TEST_CASE("calibration fits what the traces hold and says what it did not fit", "[traces][calibrate]") {
  const FitInputs in = test_fit_inputs();
  Noise none(0, 1);
  SECTION("no collectives") {
    Trace t = empty_measured_trace();
    add_gemm_sweep(t, gemm_efficiency, in, none);
    const CalibrationFit fit = paratwin::fit_calibration({t}, in);
    CHECK(fit.links.empty());
    CHECK(has_note(fit, "links.nvlink: no communication"));
    CHECK(fit.curves.size() == 1);
  }
  SECTION("no compute, network calls, one message shape") {
    Trace t = empty_measured_trace();
    add_call(t, "all_gather", 2, 1 << 20, 1e-4, true);
    add_call(t, "all_gather", 2, 1 << 20, 1e-4, true);
    const CalibrationFit fit = paratwin::fit_calibration({t}, in);
    CHECK(fit.links.empty());
    CHECK(has_note(fit, "links.network: one message shape"));
    CHECK(has_note(fit, "no compute kernel"));
  }
  SECTION("kinds outside the calibration file, and nothing at all") {
    Trace t = empty_measured_trace();
    add_kernel(t, "custom_kernel", 1, 1e9, 1e6, 1e-3);
    CHECK_THROWS_WITH(paratwin::fit_calibration({t}, in), Catch::Contains("no communication call or compute kernel"));
    Trace foreign = t;
    foreign.foreign = true;
    CHECK_THROWS_WITH(paratwin::fit_calibration({foreign}, in), Catch::Contains("foreign"));
  }
}

TEST_CASE("calibration fits fp8 kernels in the compute regime into fp8 curves of their own", "[traces][calibrate]") {
  const FitInputs in = test_fit_inputs(true);
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  // bf16 and fp8 GEMMs of the same shapes, each at its own fraction of its own peak.
  const auto fp8_efficiency = [](double m) { return 0.2 + 0.04 * std::log2(m / 64); };
  add_gemm_sweep(t, gemm_efficiency, in, none);
  add_gemm_sweep(t, fp8_efficiency, in, none, "fp8");
  // A weight-streaming fp8 GEMM (memory-bound: 16.8 MB of fp8 weights, 34 MFLOP): the kind's one memory curve.
  const double weights_bytes = 4096.0 * 4096;
  add_kernel(t, "gemm", 1, 2 * weights_bytes, weights_bytes,
             weights_bytes / (in.hbm_bytes_per_s * 0.8) + in.launch_overhead_s, "fp8");
  // Causal fp8 attention-like kernels: the fp8 causal curve.
  for (double tokens = 1024; tokens <= 16384; tokens *= 2) {
    const double flops = 2 * tokens * tokens * 64 * 128;
    add_kernel(t, "attention", tokens, flops, tokens * 128, flops / (in.fp8_flops_per_s * 0.45) + in.launch_overhead_s,
               "fp8");
    t.events.back().causal = true;
  }
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.curves.size() == 4);
  const auto& bf16 = curve(fit, "gemm", "compute_efficiency");
  REQUIRE(bf16.points.size() == 8);
  CHECK(bf16.kernels == 8);
  for (const auto& [m, efficiency] : bf16.points) CHECK(efficiency == Approx(gemm_efficiency(m)).epsilon(1e-9));
  const auto& fp8 = curve(fit, "gemm", "fp8_compute_efficiency");
  CHECK(fp8.key == "gemm");
  REQUIRE(fp8.points.size() == 8);
  CHECK(fp8.kernels == 8);
  for (const auto& [m, efficiency] : fp8.points) CHECK(efficiency == Approx(fp8_efficiency(m)).epsilon(1e-9));
  const auto& memory = curve(fit, "gemm", "memory_efficiency");
  CHECK(memory.kernels == 1);
  REQUIRE(memory.points.size() == 1);
  CHECK(memory.points[0].second == Approx(0.8).epsilon(1e-9));
  const auto& causal = curve(fit, "attention", "fp8_causal_compute_efficiency");
  CHECK(causal.points.size() == 5);
  for (const auto& point : causal.points) CHECK(point.second == Approx(0.45).epsilon(1e-9));

  // Hold-out: the fp8 curves' kernels are rows of their own (the memory curve's one size holds nothing out).
  std::map<std::string, std::size_t> held;
  for (const auto& h : fit.holdout) {
    held[h.kind] = h.stats.count;
    CHECK(h.stats.p90_abs < 1e-9);
  }
  CHECK(held == std::map<std::string, std::size_t>{{"attention (fp8)", 2}, {"gemm", 3}, {"gemm (fp8)", 3}});

  const std::string yaml = paratwin::calibration_yaml(fit, {"fp8"}, paratwin::CalibrationTarget::kNcclModel);
  CHECK_THAT(yaml, Catch::Contains("\n    gemm:\n      compute_efficiency: [[64, 0.3], ") &&
                       Catch::Contains("\n      fp8_compute_efficiency: [[64, 0.2], ") &&
                       Catch::Contains("\n    attention:\n      fp8_causal_compute_efficiency: [[1024, 0.45") &&
                       Catch::Contains("#   gemm (fp8) "));
}

TEST_CASE("hold-out error is near zero when the model is exact and reflects noise otherwise", "[traces][calibrate]") {
  const FitInputs in = test_fit_inputs(true);
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  add_collective_sweep(t, kAlphaS, kBandwidth, none);
  add_gemm_sweep(t, gemm_efficiency, in, none);
  const CalibrationFit exact = paratwin::fit_calibration({t}, in);
  REQUIRE(exact.holdout.size() == 5);  // all_gather, all_reduce (all sizes and ≥ 1 MiB), gemm
  for (const auto& h : exact.holdout) {
    CHECK(h.stats.count > 0);
    CHECK(h.stats.p90_abs < 1e-9);
  }
  Noise noise(0.02, 7);
  Trace noisy = empty_measured_trace();
  add_collective_sweep(noisy, kAlphaS, kBandwidth, noise);
  add_gemm_sweep(noisy, gemm_efficiency, in, noise);
  const CalibrationFit fit = paratwin::fit_calibration({noisy}, in);
  for (const auto& h : fit.holdout) {
    CHECK(h.stats.p90_abs > 1e-4);
    CHECK(h.stats.p90_abs < 0.06);
  }
  const std::string yaml = paratwin::calibration_yaml(fit, {"test"}, paratwin::CalibrationTarget::kAlphaBeta);
  CHECK_THAT(yaml, Catch::StartsWith("# test\n# Hold-out error"));
  CHECK_THAT(yaml, Catch::Contains("gemm") && Catch::Contains("links:") && !Catch::Contains("nccl:"));
  const std::string nccl = paratwin::calibration_yaml(fit, {"test"}, paratwin::CalibrationTarget::kNcclModel);
  CHECK_THAT(nccl, Catch::Contains("nccl:\n  nvlink_graph_fraction: ") && !Catch::Contains("\nlinks:"));
}

TEST_CASE("alpha-beta fit needs two message shapes", "[traces][calibrate]") {
  paratwin::AlphaBeta out;
  CHECK_FALSE(paratwin::fit_alpha_beta({{1, 1e6, 1e-5}, {1, 1e6, 1.1e-5}}, 450e9, out));
  CHECK(paratwin::fit_alpha_beta({{1, 1e6, 1e-5}, {1, 1e8, 1e-3}}, 450e9, out));
}

TEST_CASE("collective curves read as alpha-beta segments, clamped below and extended above", "[traces][calibrate]") {
  paratwin::CollectiveCurve c{"all_gather", 2, {{4096, 10e-6}, {1 << 20, 20e-6}, {1 << 30, 3000e-6}}};
  CHECK(c.seconds_at(4096) == 10e-6);
  CHECK(c.seconds_at(1024) == 10e-6);
  CHECK(c.seconds_at((4096.0 + (1 << 20)) / 2) == Approx(15e-6).epsilon(1e-12));
  const double slope = (3000e-6 - 20e-6) / ((1 << 30) - (1 << 20));
  CHECK(c.seconds_at(2.0 * (1 << 30)) == Approx(3000e-6 + slope * (1 << 30)).epsilon(1e-12));
}

TEST_CASE("calibration fits one curve per collective shape, a median per size, and holds out between them",
          "[traces][calibrate]") {
  FitInputs in = test_fit_inputs(true);
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  for (int rep = 0; rep < 3; ++rep) add_collective_sweep(t, kAlphaS, kBandwidth, none);
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.collectives.size() == 2);  // all_gather and all_reduce over 2 ranks
  for (const auto& curve : fit.collectives) {
    CHECK(curve.ranks == 2);
    REQUIRE(curve.points.size() == 10);  // 4 KiB … 1 GiB in steps of 4
    for (const auto& [size, seconds] : curve.points) {
      const auto bytes = static_cast<std::int64_t>(curve.kind == "all_gather" ? size / 2 : size);
      CHECK(seconds == Approx(alpha_beta_time(curve.kind, 2, bytes, kAlphaS, kBandwidth)).epsilon(1e-12));
    }
  }
  const std::string yaml = paratwin::calibration_yaml(fit, {"curves"}, paratwin::CalibrationTarget::kNcclModel);
  CHECK_THAT(yaml, Catch::Contains("collectives:\n  - {kind: all_gather, ranks: 2, time_us: [[8192, "));
  CHECK_THAT(paratwin::calibration_yaml(fit, {"curves"}, paratwin::CalibrationTarget::kAlphaBeta),
             !Catch::Contains("collectives:"));
}

TEST_CASE("a fitted launch overhead is the fixed cost of the one-row kernels and leaves the curves exact",
          "[traces][calibrate]") {
  FitInputs truth = test_fit_inputs(true);
  truth.launch_overhead_s = 6e-6;  // what every kernel pays, e.g. under per-op events
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  add_gemm_sweep(t, gemm_efficiency, truth, none);
  // One row of 4096 bf16 (16 KiB read and written: nanoseconds of work) up to 64 MiB, at 0.87 of HBM.
  for (double bytes = 1 << 14; bytes <= (1 << 26); bytes *= 4) {
    const double time_s = bytes / (truth.hbm_bytes_per_s * 0.87) + truth.launch_overhead_s;
    add_kernel(t, "rms_norm", bytes, bytes / 4, bytes, time_s);
  }
  FitInputs in = truth;
  in.launch_overhead_s = 0.9e-6;  // the default, replaced by the fit
  in.fit_launch_overhead = true;
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  CHECK(fit.launch_overhead_fitted);
  // The least kernel time beyond its work: the 16 KiB norm's, whose work at 0.87 rather than 1 adds 0.5 ns.
  CHECK(fit.launch_overhead_s == Approx(truth.launch_overhead_s).epsilon(1e-3));
  CHECK(fit.launch_overhead_s >= truth.launch_overhead_s);
  // Those 0.5 ns go from the small norms' work into the overhead, so their efficiencies read high (16 KiB: at the
  // bound), as the nanoseconds they price allow; from 1 MiB, where the work is ~0.25 µs, the curve is the norm's
  // within 0.3 %.
  for (const auto& [bytes, efficiency] : curve(fit, "rms_norm", "memory_efficiency").points) {
    INFO(bytes << " bytes");
    if (bytes >= (1 << 20)) CHECK(efficiency == Approx(0.87).epsilon(3e-3));
  }
  check_gemm_curve_and_holdout(fit);

  // Kept at 0.9 µs, the overhead leaves the norm's 6 µs in its curve: its small sizes read as latency-bound.
  in.fit_launch_overhead = false;
  const CalibrationFit kept = paratwin::fit_calibration({t}, in);
  CHECK_FALSE(kept.launch_overhead_fitted);
  CHECK(kept.launch_overhead_s == Approx(0.9e-6));
  CHECK(curve(kept, "rms_norm", "memory_efficiency").points.front().second < 0.01);
}

TEST_CASE("a fitted launch overhead stays at zero when a kernel beats its work at the peak, and is kept without "
          "kernels",
          "[traces][calibrate]") {
  FitInputs in = test_fit_inputs();
  in.fit_launch_overhead = true;
  Trace t = empty_measured_trace();
  const double bytes = 1 << 24;
  add_kernel(t, "rms_norm", bytes, bytes / 4, bytes, 0.5 * bytes / in.hbm_bytes_per_s);  // twice HBM: impossible
  add_kernel(t, "rms_norm", 4 * bytes, bytes, 4 * bytes, 4 * bytes / (0.8 * in.hbm_bytes_per_s));
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  CHECK(fit.launch_overhead_fitted);
  CHECK(fit.launch_overhead_s == 0.0);
  const auto& norm = curve(fit, "rms_norm", "memory_efficiency");
  REQUIRE(norm.points.size() == 2);
  CHECK(norm.points_at_bound == 1);
  CHECK(norm.points.back().second == Approx(0.8).epsilon(1e-9));

  Trace calls_only = empty_measured_trace();
  Noise none(0, 1);
  add_collective_sweep(calls_only, kAlphaS, kBandwidth, none);
  const CalibrationFit no_kernels = paratwin::fit_calibration({calls_only}, in);
  CHECK_FALSE(no_kernels.launch_overhead_fitted);
  CHECK(no_kernels.launch_overhead_s == Approx(in.launch_overhead_s));
  CHECK(has_note(no_kernels, "launch overhead: no compute kernel to fit it from"));
}

TEST_CASE("a fitted launch overhead comes with each kind's latency from its latency-bound kernels",
          "[traces][calibrate]") {
  FitInputs in = test_fit_inputs(true);
  in.compute_kinds["rope"] = "rope";
  in.compute_kinds["kv_reorder"] = "kv_reorder";
  in.fit_launch_overhead = true;
  constexpr double kLaunchS = 4e-6;
  Noise none(0, 1);
  Trace t = empty_measured_trace();
  FitInputs truth = in;
  truth.launch_overhead_s = kLaunchS;
  add_gemm_sweep(t, gemm_efficiency, truth, none);  // compute-bound from 64 rows: no latency-bound GEMM
  // Every 4x from 16 KiB to 64 MiB: the norms pay 2 us and RoPE 6 us beyond the launch; one 4 KiB reorder pays none.
  for (double bytes = 1 << 14; bytes <= (1 << 26); bytes *= 4) {
    add_kernel(t, "rms_norm", bytes, bytes / 4, bytes, bytes / (in.hbm_bytes_per_s * 0.87) + kLaunchS + 2e-6);
    add_kernel(t, "rope", bytes, bytes, bytes, bytes / (in.hbm_bytes_per_s * 0.8) + kLaunchS + 6e-6);
  }
  add_kernel(t, "kv_reorder", 4096, 0, 4096, 4096 / (in.hbm_bytes_per_s * 0.5) + kLaunchS);
  const CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.launch_overhead_fitted);
  CHECK(fit.launch_overhead_s == Approx(kLaunchS).epsilon(1e-3));
  REQUIRE(fit.kind_latency_s.count("rms_norm") == 1);
  REQUIRE(fit.kind_latency_s.count("rope") == 1);
  CHECK(fit.kind_latency_s.at("rms_norm") == Approx(2e-6).epsilon(1e-3));
  CHECK(fit.kind_latency_s.at("rope") == Approx(6e-6).epsilon(1e-3));
  CHECK(fit.kind_latency_s.count("gemm") == 0);
  for (const auto& [bytes, efficiency] : curve(fit, "rope", "memory_efficiency").points) {
    INFO(bytes << " bytes");
    if (bytes >= (1 << 20)) CHECK(efficiency == Approx(0.8).epsilon(5e-3));  // the 16 KiB kernel's work: ~1 ns
  }
  check_gemm_curve_and_holdout(fit);
  const std::string yaml = paratwin::calibration_yaml(fit, {"test"}, paratwin::CalibrationTarget::kNcclModel);
  CHECK_THAT(yaml, Catch::Contains("    rope:\n      latency_us: ") &&
                       Catch::Contains("    rms_norm:\n      latency_us: "));
  CHECK_THAT(yaml, !Catch::Contains("    gemm:\n      latency_us"));

  // Kept (not fitted), the overhead comes without kind latencies.
  in.fit_launch_overhead = false;
  CHECK(paratwin::fit_calibration({t}, in).kind_latency_s.empty());
}
