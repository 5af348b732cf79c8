// NCCL 2.28 tuning model against NCCL's own numbers: the TUNING table NCCL 2.28.3 printed on the project's 2×H200
// machine (hardware-reference.md §9) and the derived 8-GPU latencies of §2.3.

#include <catch2/catch.hpp>

#include "sim/calibration.hpp"
#include "sim/collectives/collective.hpp"
#include "sim/nccl_model.hpp"

using namespace paratwin;
using namespace paratwin::sim;

namespace {

CommGeometry node(int ranks) {
  CommGeometry g;
  g.ranks = ranks;
  g.nodes = 1;
  g.nvlink_bytes_per_s = 450e9;
  g.nic_bytes_per_s = 50e9;
  return g;
}

struct Cell {
  NcclFunc func;
  NcclAlgo algo;
  NcclProto proto;
  double lat_us;
  double bw_gb_per_s;
};

}  // namespace

TEST_CASE("NCCL model reproduces NCCL 2.28's tuning table on 2 H200 GPUs", "[sim][nccl]") {
  const NcclModel model(default_calibration().nccl);
  const CommGeometry g = node(2);
  // NCCL prints lat / algbw; nBytes large enough that the tree correction factor is 1.0 (log2(n/64) ≥ 21).
  const std::int64_t big = std::int64_t{1} << 30;
  const std::vector<Cell> cells = {
      {NcclFunc::kBroadcast, NcclAlgo::kRing, NcclProto::kLl, 7.2, 141.0},
      {NcclFunc::kBroadcast, NcclAlgo::kRing, NcclProto::kLl128, 15.9, 331.2},
      {NcclFunc::kBroadcast, NcclAlgo::kRing, NcclProto::kSimple, 11.8, 360.0},
      {NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kLl, 7.2, 282.0},
      {NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kLl128, 15.9, 662.4},
      {NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kSimple, 11.8, 720.0},
      {NcclFunc::kReduceScatter, NcclAlgo::kRing, NcclProto::kSimple, 11.8, 720.0},
      {NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kLl, 7.8, 141.0},
      {NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kLl128, 17.8, 331.2},
      {NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kSimple, 15.2, 360.0},
      {NcclFunc::kAllReduce, NcclAlgo::kTree, NcclProto::kLl, 8.0, 61.1},
      {NcclFunc::kAllReduce, NcclAlgo::kTree, NcclProto::kLl128, 16.5, 180.6},
      {NcclFunc::kAllReduce, NcclAlgo::kTree, NcclProto::kSimple, 16.4, 232.2},
  };
  for (const Cell& cell : cells) {
    const CollChoice c = model.evaluate(cell.func, cell.algo, cell.proto, big, DType::kBf16, g);
    INFO(to_string(cell.algo) << "/" << to_string(cell.proto) << " func " << static_cast<int>(cell.func));
    CHECK(c.latency_s * 1e6 == Approx(cell.lat_us).epsilon(1e-3));
    CHECK(c.algbw_bytes_per_s / 1e9 == Approx(cell.bw_gb_per_s).epsilon(2e-3));
  }
}

TEST_CASE("NCCL model picks Ring/LL for a 1 MiB all-reduce on 2 GPUs, as NCCL did", "[sim][nccl]") {
  const NcclModel model(default_calibration().nccl);
  const CollChoice c = model.choose(NcclFunc::kAllReduce, std::int64_t{1} << 20, DType::kBf16, node(2), {});
  CHECK(c.algo == NcclAlgo::kRing);
  CHECK(c.proto == NcclProto::kLl);
  // Measured on the machine: 17.0 µs per op; the model says 7.8 + 1048576 / 141e3 = 15.24 µs.
  CHECK(c.time_s == Approx(7.8e-6 + 1048576.0 / 141e9).epsilon(1e-6));
  // Large buffers go to Ring/Simple.
  const CollChoice big = model.choose(NcclFunc::kAllReduce, std::int64_t{1} << 30, DType::kBf16, node(2), {});
  CHECK(big.algo == NcclAlgo::kRing);
  CHECK(big.proto == NcclProto::kSimple);
}

TEST_CASE("NCCL model's 8-GPU NVLink latencies (hardware-reference §2.3)", "[sim][nccl]") {
  const NcclModel model(default_calibration().nccl);
  const CommGeometry g = node(8);
  auto lat = [&](NcclFunc f, NcclAlgo a, NcclProto p) {
    return model.evaluate(f, a, p, std::int64_t{1} << 30, DType::kBf16, g).latency_s * 1e6;
  };
  CHECK(lat(NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kLl) == Approx(15.0));
  CHECK(lat(NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kLl128) == Approx(40.6));
  CHECK(lat(NcclFunc::kAllReduce, NcclAlgo::kRing, NcclProto::kSimple) == Approx(56.0));
  CHECK(lat(NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kLl) == Approx(10.8));
  CHECK(lat(NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kLl128) == Approx(27.3));
  CHECK(lat(NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kSimple) == Approx(32.2));
  CHECK(lat(NcclFunc::kAllReduce, NcclAlgo::kTree, NcclProto::kLl) == Approx(15.2));
}

TEST_CASE("NCCL model: NVLS only when available, PAT only with one GPU per node", "[sim][nccl]") {
  const NcclModel model(default_calibration().nccl);
  CommGeometry g = node(8);
  const std::int64_t n = std::int64_t{1} << 28;
  CHECK(model.evaluate(NcclFunc::kAllReduce, NcclAlgo::kNvls, NcclProto::kSimple, n, DType::kBf16, g).time_s < 0);
  g.nvls_available = true;
  const CollChoice nvls = model.evaluate(NcclFunc::kAllReduce, NcclAlgo::kNvls, NcclProto::kSimple, n, DType::kBf16, g);
  CHECK(nvls.latency_s == Approx(25e-6));  // NVLS latency = NVLink hw latency (§2.3)
  CHECK(model.evaluate(NcclFunc::kAllReduce, NcclAlgo::kNvls, NcclProto::kLl, n, DType::kBf16, g).time_s < 0);
  CHECK(model.evaluate(NcclFunc::kAllGather, NcclAlgo::kPat, NcclProto::kSimple, n, DType::kBf16, g).time_s < 0);
  CommGeometry spread;
  spread.ranks = 8;
  spread.nodes = 8;
  spread.nvlink_bytes_per_s = 450e9;
  spread.nic_bytes_per_s = 50e9;
  const CollChoice pat =
      model.evaluate(NcclFunc::kAllGather, NcclAlgo::kPat, NcclProto::kSimple, 4096, DType::kBf16, spread);
  REQUIRE(pat.time_s > 0);
  // 8 + log2(8) × 14 (Tree/Simple net, ppn = 1) / 3.5 + 8 × 2.8 µs
  CHECK(pat.latency_s * 1e6 == Approx(8 + 3 * 14.0 / 3.5 + 8 * 2.8));
  // Multi-node rings run at the NIC graph: 48 GB/s per usable NIC.
  const CollChoice ring = model.evaluate(NcclFunc::kAllGather, NcclAlgo::kRing, NcclProto::kSimple,
                                         std::int64_t{1} << 30, DType::kBf16, spread);
  CHECK(ring.algbw_bytes_per_s == Approx(48e9 * 8 / 7));
}

TEST_CASE("algorithm/protocol restrictions parse like NCCL_ALGO / NCCL_PROTO", "[sim][nccl]") {
  const AlgoProtoMask mask = parse_algo_proto_mask("Ring,tree", "simple");
  CHECK(mask.algo[static_cast<std::size_t>(NcclAlgo::kRing)]);
  CHECK(mask.algo[static_cast<std::size_t>(NcclAlgo::kTree)]);
  CHECK_FALSE(mask.algo[static_cast<std::size_t>(NcclAlgo::kNvls)]);
  CHECK_FALSE(mask.proto[static_cast<std::size_t>(NcclProto::kLl)]);
  CHECK_THROWS_WITH(parse_algo_proto_mask("ring,collnet", ""), Catch::Contains("collnet"));
  const NcclModel model(default_calibration().nccl);
  const CollChoice c = model.choose(NcclFunc::kAllReduce, 1024, DType::kBf16, node(8), mask);
  CHECK(c.proto == NcclProto::kSimple);
}

TEST_CASE("NCCL's double binary tree parents", "[sim][nccl]") {
  // ncclGetBtree over 8 ranks: 0 is the root with child 4; 4 → {2, 6}; 2 → {1, 3}; 6 → {5, 7}.
  CHECK(dtree_parent(8, 0, 0) == -1);
  CHECK(dtree_parent(8, 4, 0) == 0);
  CHECK(dtree_parent(8, 2, 0) == 4);
  CHECK(dtree_parent(8, 6, 0) == 4);
  CHECK(dtree_parent(8, 1, 0) == 2);
  CHECK(dtree_parent(8, 7, 0) == 6);
  // Tree 1 mirrors tree 0 for an even count: root 7.
  CHECK(dtree_parent(8, 7, 1) == -1);
  CHECK(dtree_parent(8, 3, 1) == 7);
  for (const int n : {2, 3, 5, 8, 13}) {
    for (int tree = 0; tree < 2; ++tree) {
      int roots = 0;
      for (int r = 0; r < n; ++r) {
        const int p = dtree_parent(n, r, tree);
        roots += p < 0 ? 1 : 0;
        if (p >= 0) CHECK(p < n);
      }
      CHECK(roots == 1);
    }
  }
}
