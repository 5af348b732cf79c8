#include <catch2/catch.hpp>

#include "tests/sim/sim_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::test;

TEST_CASE("a schedule with more ranks than the cluster has GPUs is an error", "[sim][errors]") {
  ScheduleMaker maker(16);
  for (int r = 0; r < 16; ++r) maker.compute(r, gemm(128, 128, 128));
  const Placement p = place(8, h200_cluster(1));
  CHECK_THROWS_WITH(simulate(maker.get(), p, SimOptions{}), Catch::Contains("16 ranks") && Catch::Contains("8 GPUs"));
  CHECK_THROWS_AS(simulate(maker.get(), p, SimOptions{}), Error);
}

TEST_CASE("zero or negative cluster bandwidths are errors naming the key", "[sim][errors]") {
  ScheduleMaker maker(2);
  maker.send_recv(0, 1, 1024);
  Cluster zero = h200_cluster(1);
  zero.scale_up.bandwidth_bytes_per_s = 0;
  CHECK_THROWS_WITH(simulate(maker.get(), place(2, zero), SimOptions{}),
                    Catch::Contains("scale_up.bandwidth_bytes_per_s"));
  ScheduleMaker across(16);
  across.send_recv(0, 8, 1024);
  Cluster negative = h200_cluster(2);
  negative.scale_out.nic_bandwidth_bytes_per_s = -50e9;
  CHECK_THROWS_WITH(simulate(across.get(), place(16, negative), SimOptions{}),
                    Catch::Contains("scale_out.nic_bandwidth_bytes_per_s"));
  Cluster no_hbm = h200_cluster(1);
  no_hbm.gpu.hbm_bytes_per_s = 0;
  CHECK_THROWS_WITH(simulate(maker.get(), place(2, no_hbm), SimOptions{}), Catch::Contains("hbm_bytes_per_s"));
}

TEST_CASE("inconsistent schedules are errors naming the op", "[sim][errors]") {
  const Placement p = place(2, h200_cluster(1));
  // A collective whose members disagree on the byte count.
  ScheduleMaker maker(2);
  maker.collective({0, 1}, CollectiveKind::kAllGather, 1024);
  Schedule s = maker.take();
  std::get<CollectiveOp>(s.ranks[1][0].body).bytes = 2048;
  CHECK_THROWS_WITH(simulate(s, p, SimOptions{}), Catch::Contains("differs"));
  // A collective that only one rank issues.
  ScheduleMaker lonely(2);
  lonely.collective({0, 1}, CollectiveKind::kAllGather, 1024);
  Schedule l = lonely.take();
  l.ranks[1].clear();
  CHECK_THROWS_WITH(simulate(l, p, SimOptions{}), Catch::Contains("group_size"));
  // A send without its recv.
  ScheduleMaker half(2);
  half.send_recv(0, 1, 64);
  Schedule h = half.take();
  h.ranks[1].clear();
  CHECK_THROWS_WITH(simulate(h, p, SimOptions{}), Catch::Contains("match"));
  // A dependency on a later op.
  ScheduleMaker forward(2);
  forward.compute(0, gemm(64, 64, 64), {});
  Schedule f = forward.take();
  f.ranks[0][0].deps = {3};
  CHECK_THROWS_WITH(simulate(f, p, SimOptions{}), Catch::Contains("dep 3"));
  // Bad option values.
  SimOptions bad;
  bad.algorithms = "ring,collnet";
  CHECK_THROWS_WITH(simulate(f, p, bad), Catch::Contains("collnet"));
}

TEST_CASE("a schedule that waits on itself reports the stuck op", "[sim][errors]") {
  // Rank 0 issues A then B, rank 1 issues B then A: a classic collective-order deadlock.
  ScheduleMaker maker(2);
  maker.collective({0, 1}, CollectiveKind::kAllGather, 1024);
  maker.collective({0, 1}, CollectiveKind::kAllGather, 2048);
  Schedule s = maker.take();
  std::swap(s.ranks[1][0].body, s.ranks[1][1].body);
  CHECK_THROWS_WITH(simulate(s, place(2, h200_cluster(1)), SimOptions{}), Catch::Contains("deadlocks"));
}
