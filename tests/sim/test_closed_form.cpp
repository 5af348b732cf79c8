// Closed-form checks: the simulator against α-β formulas (pure α-β mode: no NCCL caps or latencies) and against
// NCCL's own tuning model (NCCL mode, where the flows run at NCCL's modelled bandwidth).

#include <catch2/catch.hpp>

#include "sim/calibration.hpp"
#include "sim/nccl_model.hpp"
#include "tests/sim/sim_test_util.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

constexpr double kNvlink = 450e9;
constexpr double kNvlinkHop = 0.6e-6;
constexpr double kNic = 50e9;
constexpr double kNicHop = 2.7e-6;

std::vector<int> iota(int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = first + i;
  return v;
}

double collective_time(int nodes, int n, CollectiveKind kind, std::int64_t bytes, const SimOptions& options) {
  ScheduleMaker maker(n);
  maker.collective(iota(n), kind, bytes);
  const Cluster cluster = h200_cluster(nodes);
  const SimResult result = simulate(maker.get(), place(n, cluster), options);
  // Every member finishes together; all start at 0.
  for (const Event& e : result.trace.events) {
    CHECK(e.start_s == 0.0);
    CHECK(e.end_s == Approx(result.summary.end_to_end_s).epsilon(1e-12));
  }
  return result.summary.end_to_end_s;
}

}  // namespace

TEST_CASE("ring all-gather on one node takes (n-1)/n·S/B + (n-1)·α", "[sim][closed-form]") {
  for (const int n : {2, 4, 8}) {
    for (const std::int64_t per_rank : {std::int64_t{4096}, std::int64_t{1} << 20, std::int64_t{32} << 20}) {
      const double s_total = static_cast<double>(per_rank) * n;  // nccl-tests S: the all-gather output
      const double expected = (n - 1.0) / n * s_total / kNvlink + (n - 1) * kNvlinkHop;
      const double t = collective_time(1, n, CollectiveKind::kAllGather, per_rank, alpha_beta());
      INFO("n = " << n << ", bytes per rank = " << per_rank);
      CHECK(t == Approx(expected).epsilon(0.01));
      CHECK(t == Approx(expected).epsilon(1e-9));  // exact in practice
    }
  }
}

TEST_CASE("ring reduce-scatter equals all-gather, and ring all-reduce moves twice the bytes", "[sim][closed-form]") {
  const int n = 8;
  const std::int64_t s = std::int64_t{64} << 20;
  const double rs = collective_time(1, n, CollectiveKind::kReduceScatter, s / n, alpha_beta());
  const double ag = collective_time(1, n, CollectiveKind::kAllGather, s / n, alpha_beta());
  const double ar = collective_time(1, n, CollectiveKind::kAllReduce, s, alpha_beta());
  CHECK(rs == Approx(ag).epsilon(1e-12));
  const double expected_ar = 2.0 * (n - 1) / n * static_cast<double>(s) / kNvlink + 2 * (n - 1) * kNvlinkHop;
  CHECK(ar == Approx(expected_ar).epsilon(0.01));
  CHECK(ar == Approx(expected_ar).epsilon(1e-9));
  // Twice the bytes of the all-gather of the same buffer (and twice the steps).
  CHECK(ar == Approx(2 * ag).epsilon(1e-9));
}

TEST_CASE("ring across nodes spreads the node hop over the NICs", "[sim][closed-form]") {
  // 2 nodes × 8 GPUs: each rank sends V = 15·m; the node hop carries V over 8 rails (V/8 per 50 GB/s NIC), the
  // NVLink hops carry V at 450 GB/s: the NICs bind (V/400 GB/s > V/450 GB/s). α per step: the NIC path.
  const std::int64_t m = std::int64_t{8} << 20;
  const double v = 15.0 * static_cast<double>(m);
  const double expected = v / 8 / kNic + 15 * kNicHop;
  CHECK(collective_time(2, 16, CollectiveKind::kAllGather, m, alpha_beta()) == Approx(expected).epsilon(1e-9));
}

TEST_CASE("all-to-all across nodes is bound by one NIC per GPU", "[sim][closed-form]") {
  const int n = 16;  // 2 nodes × 8
  const std::int64_t m = std::int64_t{4} << 20;
  std::vector<std::vector<std::int64_t>> send(n, std::vector<std::int64_t>(n, m));
  ScheduleMaker maker(n);
  maker.all_to_all(iota(n), send);
  const Cluster cluster = h200_cluster(2);
  const Placement placement = place(n, cluster);
  // Each GPU sends 8·m off node through its own NIC, 7·m over NVLink: the NIC binds.
  const double nic_bound = 8.0 * static_cast<double>(m) / kNic;
  const double nvlink_bound = 7.0 * static_cast<double>(m) / kNvlink;
  REQUIRE(nic_bound > nvlink_bound);
  const SimResult ab = simulate(maker.get(), placement, alpha_beta());
  CHECK(ab.summary.end_to_end_s == Approx(nic_bound + kNicHop).epsilon(1e-9));
  // NCCL mode: NCCL's P2P Simple protocol at 48 of the 50 GB/s, latency of one network ring step (8.4 + 14 µs).
  const SimResult nccl = simulate(maker.get(), placement, SimOptions{});
  CHECK(nccl.summary.end_to_end_s == Approx(8.0 * static_cast<double>(m) / 48e9 + 22.4e-6).epsilon(1e-6));
  // The busiest links are NICs, at ≈ full utilization in α-β mode.
  REQUIRE(!ab.summary.busiest_links.empty());
  CHECK(ab.summary.busiest_links.front().link_class == "nic");
  CHECK(ab.summary.busiest_links.front().bytes == Approx(8.0 * static_cast<double>(m)));
  CHECK(ab.summary.busiest_links.front().utilization == Approx(nic_bound / (nic_bound + kNicHop)).epsilon(1e-9));
}

TEST_CASE("all-to-all over more GPUs than one parallel task holds is still bound by one NIC per GPU",
          "[sim][closed-form]") {
  // 128 GPUs (16 nodes) exceed the engine's hosts per parallel task, so it splits the instance into one task per
  // source GPU; each task must carry only its own source's NCCL cap, or a destination's host would serve its cap once
  // per source (a 100x slowdown, seen at 128 GPUs before the fix).
  const int n = 128;
  const std::int64_t m = std::int64_t{1} << 20;
  std::vector<std::vector<std::int64_t>> send(n, std::vector<std::int64_t>(n, m));
  ScheduleMaker maker(n);
  maker.all_to_all(iota(n), send);
  const Placement placement = place(n, h200_cluster(16));
  const SimResult nccl = simulate(maker.get(), placement, SimOptions{});
  // Each GPU sends 120·m off node through its NIC at NCCL's 48 GB/s Simple rate, after one network ring step.
  CHECK(nccl.summary.end_to_end_s == Approx(120.0 * static_cast<double>(m) / 48e9 + 22.4e-6).epsilon(1e-3));
}

TEST_CASE("a fat tree's oversubscription slows cross-node all-to-all", "[sim][closed-form]") {
  const int n = 16;
  const std::int64_t m = std::int64_t{4} << 20;
  std::vector<std::vector<std::int64_t>> send(n, std::vector<std::int64_t>(n, m));
  ScheduleMaker maker(n);
  maker.all_to_all(iota(n), send);
  Cluster cluster = h200_cluster(2);
  cluster.scale_out.topology = ScaleOutTopology::kFatTree;
  cluster.scale_out.oversubscription = 2.0;
  const SimResult r = simulate(maker.get(), place(n, cluster), alpha_beta());
  // Node uplink: 8 NICs × 50 GB/s / 2 = 200 GB/s for the node's 64·m cross-node bytes.
  CHECK(r.summary.end_to_end_s == Approx(64.0 * static_cast<double>(m) / 200e9 + kNicHop).epsilon(1e-9));
}

TEST_CASE("a lone send/recv takes latency + bytes / bandwidth", "[sim][closed-form]") {
  const std::int64_t bytes = std::int64_t{100} << 20;
  ScheduleMaker maker(16);
  maker.send_recv(0, 1, bytes);
  maker.send_recv(2, 9, bytes);  // node 0 → node 1
  const SimResult r = simulate(maker.get(), place(16, h200_cluster(2)), alpha_beta());
  CHECK(event(r.trace, 1, 0).end_s == Approx(kNvlinkHop + static_cast<double>(bytes) / kNvlink).epsilon(1e-12));
  CHECK(event(r.trace, 9, 0).end_s == Approx(kNicHop + static_cast<double>(bytes) / kNic).epsilon(1e-12));
  CHECK(event(r.trace, 0, 0).end_s == event(r.trace, 1, 0).end_s);
}

TEST_CASE("concurrent flows share a link fairly", "[sim][closed-form]") {
  const std::int64_t s = std::int64_t{64} << 20;
  ScheduleMaker maker(16);
  maker.send_recv(1, 0, s);
  maker.send_recv(2, 5, s);  // a different destination port: no sharing
  const SimResult lone = simulate(maker.get(), place(16, h200_cluster(2)), alpha_beta());
  // Rank 8 runs one comm op at a time, so two senders into it come from one all-to-all: ranks 3 and 4 both send S
  // to rank 8 across nodes and share its NIC down link.
  ScheduleMaker contended(16);
  std::vector<std::vector<std::int64_t>> send(16, std::vector<std::int64_t>(16, 0));
  send[3][8] = s;
  send[4][8] = s;
  contended.all_to_all(iota(16), send);
  const SimResult r = simulate(contended.get(), place(16, h200_cluster(2)), alpha_beta());
  // Two flows of S into one 50 GB/s NIC down link: 2·S/B.
  CHECK(r.summary.end_to_end_s == Approx(kNicHop + 2.0 * static_cast<double>(s) / kNic).epsilon(1e-9));
  CHECK(event(lone.trace, 0, 0).end_s == Approx(kNvlinkHop + static_cast<double>(s) / kNvlink).epsilon(1e-12));
  CHECK(event(lone.trace, 5, 0).end_s == event(lone.trace, 0, 0).end_s);
}

TEST_CASE("NCCL mode: a single-node ring all-gather matches NCCL's tuning model", "[sim][closed-form][nccl]") {
  // Caps accounted for: the flows run at NCCL's algorithm bandwidth (below the NVLink line rate), and the
  // latency is NCCL's; the simulated time equals NCCL's own estimate lat + nBytes / algbw.
  const int n = 8;
  for (const std::int64_t per_rank : {std::int64_t{1024}, std::int64_t{1} << 20, std::int64_t{64} << 20}) {
    const double t = collective_time(1, n, CollectiveKind::kAllGather, per_rank, SimOptions{});
    sim::CommGeometry g;
    g.ranks = n;
    g.nodes = 1;
    g.nvlink_bytes_per_s = kNvlink;
    g.nic_bytes_per_s = kNic;
    const sim::NcclModel model(default_calibration().nccl);
    const sim::CollChoice c = model.choose(sim::NcclFunc::kAllGather, per_rank * n, DType::kBf16, g, {});
    INFO("bytes per rank " << per_rank << ": " << to_string(c.algo) << "/" << to_string(c.proto));
    CHECK(t == Approx(c.time_s).epsilon(1e-9));
  }
  // Small messages take NCCL's Ring/LL latency of 6.6 + 7 × 0.6 = 10.8 µs (hardware-reference §2.3).
  const double tiny = collective_time(1, n, CollectiveKind::kAllGather, 8, SimOptions{});
  CHECK(tiny == Approx(10.8e-6 + 64.0 / (141e9 * 8 / 7)).epsilon(1e-6));
}

TEST_CASE("a GEMM runs at the roofline", "[sim][closed-form][compute]") {
  const Cluster cluster = h200_cluster(1);
  ScheduleMaker maker(1);
  maker.compute(0, gemm(8192, 8192, 8192));               // compute bound
  maker.compute(0, gemm(8192, 8192, 8192, DType::kFp8));  // compute bound at the fp8 peak
  maker.compute(0, gemm(1, 8192, 8192));                  // memory bound (decode GEMV)
  const SimResult r = simulate(maker.get(), place(1, cluster), SimOptions{});
  const double flops = 2.0 * 8192.0 * 8192.0 * 8192.0;
  const double launch = 0.9e-6;
  const double eff = 797.8 / 989.4;  // cuBLAS 8192³ anchor of the GEMM curve
  const Event& bf16 = event(r.trace, 0, 0);
  const Event& fp8 = event(r.trace, 0, 1);
  const Event& gemv = event(r.trace, 0, 2);
  CHECK(bf16.end_s - bf16.start_s == Approx(flops / (989.4e12 * eff) + launch).epsilon(1e-12));
  CHECK(fp8.end_s - fp8.start_s == Approx(flops / (1978.9e12 * eff) + launch).epsilon(1e-12));
  const double gemv_bytes = 2.0 * (8192.0 + 8192.0 * 8192.0 + 8192.0);
  CHECK(gemv.end_s - gemv.start_s == Approx(gemv_bytes / (4.8e12 * 2903.0 / 3350.0) + launch).epsilon(1e-12));
  // The stream runs them back to back.
  CHECK(fp8.start_s == bf16.end_s);
  CHECK(gemv.start_s == fp8.end_s);
}
