// A calibration file written by traces/calibration_fit.cpp must read back through the sim's own loader, with the
// values the fit found.
#include <catch2/catch.hpp>
#include <cmath>

#include "sim/calibration.hpp"
#include "tests/traces/calibration_test_data.hpp"
#include "traces/calibration_fit.hpp"

using namespace paratwin::test;

TEST_CASE("a fitted calibration file loads through the sim's calibration loader", "[sim][calibration]") {
  paratwin::FitInputs in = test_fit_inputs(true);
  // The sim's own kind → key table (trace kind "topk" is "top_k" in the file).
  in.compute_kinds.clear();
  for (std::size_t k = 0; k < paratwin::kComputeKindCount; ++k) {
    const auto kind = static_cast<paratwin::ComputeKind>(k);
    in.compute_kinds.emplace(paratwin::to_string(kind), paratwin::calibration_kernel_key(kind));
  }
  Noise noise(0.02, 3);
  paratwin::Trace t = empty_measured_trace();
  add_collective_sweep(t, 3e-6, 300e9, noise);
  add_collective_sweep(t, 8e-6, 40e9, noise, /*cross_node=*/true);
  add_gemm_sweep(
      t, [](double m) { return 0.25 + 0.06 * std::log2(m / 64); }, in, noise);
  add_gemm_sweep(
      t, [](double m) { return 0.2 + 0.04 * std::log2(m / 64); }, in, noise, "fp8");
  for (double bytes = 1 << 20; bytes <= (1 << 26); bytes *= 4) {
    add_kernel(t, "rms_norm", bytes, bytes / 4, bytes, bytes / (in.hbm_bytes_per_s * 0.8) + in.launch_overhead_s);
  }
  for (double rows = 1024; rows <= 16384; rows *= 2) {
    add_kernel(t, "topk", rows, 0, rows * 4096 * 2,
               rows * 4096 * 2 / (in.hbm_bytes_per_s * 0.5) + in.launch_overhead_s);
  }
  const paratwin::CalibrationFit fit = paratwin::fit_calibration({t}, in);
  REQUIRE(fit.links.size() == 2);
  const std::string yaml =
      paratwin::calibration_yaml(fit, {"fitted in a test"}, paratwin::CalibrationTarget::kAlphaBeta);
  const paratwin::Calibration cal = paratwin::apply_calibration_yaml(paratwin::default_calibration(), yaml, "fit.yaml");
  for (const auto& link : fit.links) {
    const paratwin::LinkClassParams& loaded = link.link_class == "nvlink" ? cal.nvlink : cal.network;
    REQUIRE(loaded.latency_s);
    REQUIRE(loaded.bandwidth_bytes_per_s);
    CHECK(*loaded.latency_s == Approx(link.latency_s).epsilon(1e-8));
    CHECK(*loaded.bandwidth_bytes_per_s == Approx(link.bandwidth_bytes_per_s).epsilon(1e-8));
  }
  // For the NCCL model the bandwidths become graph fractions of the line rates, and the links keep the cluster's.
  const std::string nccl_yaml =
      paratwin::calibration_yaml(fit, {"fitted in a test"}, paratwin::CalibrationTarget::kNcclModel);
  const paratwin::Calibration nccl =
      paratwin::apply_calibration_yaml(paratwin::default_calibration(), nccl_yaml, "fit.yaml");
  CHECK_FALSE(nccl.nvlink.bandwidth_bytes_per_s);
  CHECK_FALSE(nccl.network.bandwidth_bytes_per_s);
  for (const auto& link : fit.links) {
    const double fraction =
        link.link_class == "nvlink" ? nccl.nccl.nvlink_graph_fraction : nccl.nccl.net_graph_fraction;
    CHECK(fraction * link.line_rate_bytes_per_s == Approx(link.bandwidth_bytes_per_s).epsilon(1e-8));
  }
  CHECK(nccl.compute.of(paratwin::ComputeKind::kGemm).compute_efficiency.points ==
        cal.compute.of(paratwin::ComputeKind::kGemm).compute_efficiency.points);
  CHECK(cal.compute.launch_overhead_s == Approx(in.launch_overhead_s));
  const auto& gemm = cal.compute.of(paratwin::ComputeKind::kGemm).compute_efficiency;
  const auto& fp8_gemm = cal.compute.of(paratwin::ComputeKind::kGemm).fp8_compute_efficiency;
  const auto& norm = cal.compute.of(paratwin::ComputeKind::kRmsNorm).memory_efficiency;
  const auto& top_k = cal.compute.of(paratwin::ComputeKind::kTopK).memory_efficiency;
  REQUIRE(fit.curves.size() == 4);
  for (const auto& c : fit.curves) {
    const auto& loaded = c.kind == "gemm"   ? (c.curve == "fp8_compute_efficiency" ? fp8_gemm : gemm)
                         : c.kind == "topk" ? top_k
                                            : norm;
    REQUIRE(loaded.points.size() == c.points.size());
    for (std::size_t i = 0; i < c.points.size(); ++i) {
      CHECK(loaded.points[i].first == Approx(c.points[i].first).epsilon(1e-8));
      CHECK(loaded.points[i].second == Approx(c.points[i].second).epsilon(1e-8));
      CHECK(loaded.at(c.points[i].first) == Approx(paratwin::curve_at(c.points, c.points[i].first)).epsilon(1e-8));
    }
  }
  // Kinds the traces did not hold keep the built-in curves.
  CHECK(cal.compute.of(paratwin::ComputeKind::kAttention).compute_efficiency.points ==
        paratwin::default_calibration().compute.of(paratwin::ComputeKind::kAttention).compute_efficiency.points);
}
