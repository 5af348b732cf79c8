#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "sim/calibration.hpp"
#include "tests/sim/sim_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace

TEST_CASE("calibration file overrides named constants", "[sim][calibration]") {
  const Calibration cal = apply_calibration_yaml(default_calibration(), R"(
nccl:
  base_latency_us:
    ring: {ll: 1.5}
  hw_latency_us:
    nvlink: {ring: {simple: 2.0}}
  ll_max_bw_gb_per_s: {one_node: 100}
  channels: {ring: 16}
  nvlink_graph_fraction: 0.82
  p2p_ll_threshold_bytes: 0
  ll128: false
links:
  nvlink: {latency_us: 0.3, bandwidth_gb_per_s: 400}
compute:
  launch_overhead_us: 2.5
  kernels:
    gemm:
      compute_efficiency: [[1, 0.5], [4096, 0.9]]
    rms_norm:
      latency_us: 3.5
)",
                                                 "test.yaml");
  CHECK(cal.source == "test.yaml");
  const auto ring = static_cast<std::size_t>(NcclAlgo::kRing);
  CHECK(cal.nccl.base_latency_us[ring][0] == 1.5);
  CHECK(cal.nccl.base_latency_us[ring][2] == 8.4);  // untouched
  CHECK(cal.nccl.hw_latency_us[0][ring][2] == 2.0);
  CHECK(cal.nccl.ll_max_bw_single_node_gb_per_s == 100);
  CHECK(cal.nccl.ring_channels == 16);
  CHECK(cal.nccl.nvlink_graph_fraction == 0.82);
  CHECK(cal.nccl.p2p_ll_threshold_bytes == 0);
  CHECK_FALSE(cal.nccl.ll128_enabled);
  CHECK(cal.nvlink.latency_s.value() == Approx(0.3e-6));
  CHECK(cal.nvlink.bandwidth_bytes_per_s.value() == Approx(400e9));
  CHECK_FALSE(cal.network.latency_s.has_value());
  CHECK(cal.compute.launch_overhead_s == Approx(2.5e-6));
  CHECK(cal.compute.of(ComputeKind::kGemm).compute_efficiency.at(4096) == Approx(0.9));
  CHECK(cal.compute.of(ComputeKind::kRmsNorm).latency_s == Approx(3.5e-6));
  CHECK(cal.compute.of(ComputeKind::kGemm).latency_s == 0.0);  // untouched
}

TEST_CASE("calibration file sets fp8 compute curves per kind, and a bad one is named by its key path",
          "[sim][calibration]") {
  // The built-in constants have none: fp8 ops read the kinds' own curves at the fp8 peak, as before.
  for (const auto& kernel : default_calibration().compute.kernels) {
    CHECK(kernel.fp8_compute_efficiency.points.empty());
    CHECK(kernel.fp8_causal_compute_efficiency.points.empty());
  }
  const Calibration cal = apply_calibration_yaml(default_calibration(), R"(
compute:
  kernels:
    grouped_gemm:
      fp8_compute_efficiency: [[256, 0.4], [1024, 0.55]]
    indexer_score:
      fp8_causal_compute_efficiency: [[4096, 0.3]]
)",
                                                 "fp8.yaml");
  const KernelParams& grouped = cal.compute.of(ComputeKind::kGroupedGemm);
  CHECK(grouped.fp8_compute_efficiency.points == std::vector<std::pair<double, double>>{{256, 0.4}, {1024, 0.55}});
  CHECK(grouped.fp8_causal_compute_efficiency.points.empty());
  CHECK(grouped.compute_efficiency.points ==
        default_calibration().compute.of(ComputeKind::kGroupedGemm).compute_efficiency.points);  // untouched
  const KernelParams& indexer = cal.compute.of(ComputeKind::kIndexerScore);
  CHECK(indexer.fp8_causal_compute_efficiency.points == std::vector<std::pair<double, double>>{{4096, 0.3}});
  CHECK(indexer.fp8_compute_efficiency.points.empty());

  const auto bad = [](const std::string& yaml) {
    return apply_calibration_yaml(default_calibration(), yaml, "fp8.yaml");
  };
  CHECK_THROWS_WITH(bad("compute: {kernels: {gemm: {fp8_compute_efficiency: [[10, 1.5]]}}}"),
                    Catch::Contains("compute.kernels.gemm.fp8_compute_efficiency[0]") && Catch::Contains("fp8.yaml"));
  CHECK_THROWS_WITH(
      bad("compute: {kernels: {attention: {fp8_causal_compute_efficiency: [[10, 0.5], [5, 0.6]]}}}"),
      Catch::Contains("compute.kernels.attention.fp8_causal_compute_efficiency[1]") && Catch::Contains("increase"));
  CHECK_THROWS_WITH(bad("compute: {kernels: {gemm: {fp8_compute_efficiency: []}}}"),
                    Catch::Contains("compute.kernels.gemm.fp8_compute_efficiency") && Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(bad("compute: {kernels: {gemm: {fp8_memory_efficiency: [[1, 0.5]]}}}"),
                    Catch::Contains("compute.kernels.gemm.fp8_memory_efficiency"));
}

TEST_CASE("calibration rejects unknown keys, naming them", "[sim][calibration]") {
  CHECK_THROWS_WITH(apply_calibration_yaml(default_calibration(), "nccl: {channelz: {ring: 4}}", "c.yaml"),
                    Catch::Contains("nccl.channelz") && Catch::Contains("c.yaml"));
  CHECK_THROWS_WITH(apply_calibration_yaml(default_calibration(), "compute: {kernels: {gemmm: {}}}", "c.yaml"),
                    Catch::Contains("compute.kernels.gemmm"));
  CHECK_THROWS_WITH(
      apply_calibration_yaml(default_calibration(), "nccl: {base_latency_us: {ring: {ll129: 1}}}", "c.yaml"),
      Catch::Contains("ll129"));
  CHECK_THROWS_WITH(apply_calibration_yaml(default_calibration(), "networks: {}", "c.yaml"),
                    Catch::Contains("networks"));
}

TEST_CASE("calibration rejects non-positive bandwidths and bad values", "[sim][calibration]") {
  CHECK_THROWS_WITH(apply_calibration_yaml(default_calibration(), "links: {nvlink: {bandwidth_gb_per_s: 0}}", "c.yaml"),
                    Catch::Contains("links.nvlink.bandwidth_gb_per_s") && Catch::Contains("> 0"));
  CHECK_THROWS_WITH(
      apply_calibration_yaml(default_calibration(), "links: {network: {bandwidth_gb_per_s: -5}}", "c.yaml"),
      Catch::Contains("links.network.bandwidth_gb_per_s"));
  CHECK_THROWS_AS(apply_calibration_yaml(default_calibration(), "nccl: {ll_max_bw_gb_per_s: {one_node: -1}}", "c.yaml"),
                  Error);
  CHECK_THROWS_AS(apply_calibration_yaml(default_calibration(), "nccl: {base_latency_us: {ring: {ll: -1}}}", "c.yaml"),
                  Error);
  CHECK_THROWS_AS(
      apply_calibration_yaml(default_calibration(),
                             "compute: {kernels: {gemm: {compute_efficiency: [[10, 0.5], [5, 0.6]]}}}", "c.yaml"),
      Error);
  CHECK_THROWS_AS(apply_calibration_yaml(default_calibration(),
                                         "compute: {kernels: {gemm: {compute_efficiency: [[10, 1.5]]}}}", "c.yaml"),
                  Error);
  CHECK_THROWS_AS(apply_calibration_yaml(default_calibration(), "nccl: [1, 2", "c.yaml"), Error);
  CHECK_THROWS_WITH(
      apply_calibration_yaml(default_calibration(), "compute: {kernels: {rope: {latency_us: -1}}}", "c.yaml"),
      Catch::Contains("compute.kernels.rope.latency_us"));
}

TEST_CASE("simulate() applies a calibration file and rejects a bad one", "[sim][calibration]") {
  test::ScheduleMaker maker(2);
  maker.send_recv(0, 1, 1 << 20);
  const Placement placement = test::place(2, test::h200_cluster(1));
  SimOptions options = test::alpha_beta();
  options.calibration_file =
      write_temp("paratwin_cal_ok.yaml", "links: {nvlink: {latency_us: 0, bandwidth_gb_per_s: 100}}\n");
  const SimResult r = simulate(maker.get(), placement, options);
  CHECK(r.summary.end_to_end_s == Approx((1 << 20) / 100e9).epsilon(1e-9));
  CHECK(r.trace.meta.calibration == options.calibration_file);
  options.calibration_file = write_temp("paratwin_cal_bad.yaml", "links: {nvlink: {latencyus: 1}}\n");
  CHECK_THROWS_WITH(simulate(maker.get(), placement, options), Catch::Contains("links.nvlink.latencyus"));
  options.calibration_file = "/nonexistent/paratwin.yaml";
  CHECK_THROWS_WITH(simulate(maker.get(), placement, options), Catch::Contains("/nonexistent/paratwin.yaml"));
}

TEST_CASE("measured collective curves time single-node calls of their shape, and bad curves are named",
          "[sim][calibration]") {
  test::ScheduleMaker maker(2);
  maker.collective({0, 1}, CollectiveKind::kAllGather, 1 << 20);  // nccl-tests size 2 MiB
  maker.send_recv(0, 1, 3 << 20);
  const Placement placement = test::place(2, test::h200_cluster(1));
  SimOptions options;
  options.calibration_file = write_temp("paratwin_cal_curves.yaml",
                                        "collectives:\n"
                                        "  - {kind: all_gather, ranks: 2, time_us: [[1048576, 10], [4194304, 30]]}\n"
                                        "  - {kind: send, ranks: 2, time_us: [[1048576, 5], [2097152, 9]]}\n");
  const SimResult r = simulate(maker.get(), placement, options);
  double all_gather_s = 0, send_s = 0;
  for (const auto& e : r.trace.events) {
    if (e.rank == 0 && e.kind == "all_gather") all_gather_s = e.end_s - e.start_s;
    if (e.rank == 0 && e.kind == "send") send_s = e.end_s - e.start_s;
  }
  CHECK(all_gather_s == Approx(10e-6 + (2097152.0 - 1048576) * 20e-6 / 3145728).epsilon(1e-9));
  CHECK(send_s == Approx(9e-6 + 1048576.0 * 4e-6 / 1048576).epsilon(1e-9));  // extended past the last point

  const auto bad = [](const std::string& yaml) {
    return apply_calibration_yaml(default_calibration(), yaml, "curves.yaml");
  };
  CHECK_THROWS_WITH(bad("collectives:\n  - {kind: gather, ranks: 2, time_us: [[1, 1]]}\n"),
                    Catch::Contains("collectives[0].kind") && Catch::Contains("gather"));
  CHECK_THROWS_WITH(bad("collectives:\n  - {kind: send, ranks: 1, time_us: [[1, 1]]}\n"),
                    Catch::Contains("collectives[0].ranks"));
  CHECK_THROWS_WITH(bad("collectives:\n  - {kind: send, ranks: 2, time_us: [[2, 1], [1, 1]]}\n"),
                    Catch::Contains("collectives[0].time_us[1]") && Catch::Contains("increase"));
  CHECK_THROWS_WITH(bad("collectives:\n  - {kind: send, ranks: 2, time_us: [[1, 1]], alpha: 3}\n"),
                    Catch::Contains("unknown key 'collectives[0].alpha'"));
  CHECK_THROWS_WITH(bad("collectives:\n  - {kind: send, ranks: 2}\n"), Catch::Contains("time_us"));
}
