// Placement of ranks on the GPUs of a cluster, and what each process group spans.

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/topology/layout_test_util.hpp"
#include "topology/cluster.hpp"
#include "topology/error.hpp"
#include "topology/placement.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {
namespace {

using Catch::Matchers::Contains;
using test::make_config;

constexpr double kNvlink = 450e9;       // h200-sxm scale_up.bandwidth_bytes_per_s
constexpr double kNicShare = 50e9;      // 8 NICs × 50 GB/s / 8 GPUs
constexpr double kFatTreeShare = 25e9;  // the same over a 2:1 fat tree

std::string placement_error(const ParallelConfig& parallel, const Cluster& cluster) {
  const RankLayout layout(parallel);
  try {
    const Placement placement(layout, cluster);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no paratwin::Error for " << parallel.to_flags() << " on " << cluster.total_gpus() << " GPUs");
  return "";
}

/// Checks the span of every group of every family against a direct computation from the placement rule.
void check_all_spans(const RankLayout& layout, const Placement& placement) {
  const Cluster& cluster = placement.cluster();
  for (const GroupFamily family : kAllFamilies) {
    for (const RankGroup& group : layout.groups(family)) {
      for (int replica = 0; replica < placement.replicas(); ++replica) {
        std::vector<int> nodes;
        for (const int rank : group.ranks) {
          nodes.push_back((replica * layout.world_size() + rank) / cluster.gpus_per_node);
        }
        std::sort(nodes.begin(), nodes.end());
        nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
        const GroupSpan span = placement.span(group.ranks, replica);
        INFO(family_key(family) << " group " << group.index << " replica " << replica);
        CHECK(span.nodes == nodes);
        CHECK(span.single_nvlink_domain == (nodes.size() == 1));
        CHECK(span.bottleneck_bytes_per_s == (nodes.size() == 1 ? cluster.scale_up.bandwidth_bytes_per_s
                                                                : std::min(cluster.scale_up.bandwidth_bytes_per_s,
                                                                           cluster.per_gpu_scale_out_bytes_per_s())));
      }
    }
  }
}

TEST_CASE("placement: tp 8 cp 8 on one node stays on NVLink", "[placement]") {
  const RankLayout layout(make_config(8, 1, 1, false, 8));
  const Placement placement(layout, load_cluster("h200-sxm", 1));
  CHECK(placement.world_size() == 8);
  CHECK(placement.gpus_used() == 8);
  CHECK(placement.replicas() == 1);
  for (int rank = 0; rank < 8; ++rank) CHECK(placement.location(rank) == GpuLocation{0, rank});
  for (const GroupFamily family : kAllFamilies) {
    for (const RankGroup& group : layout.groups(family)) {
      INFO(family_key(family) << " group " << group.index);
      const GroupSpan span = placement.span(group.ranks);
      CHECK(span.nodes == std::vector<int>{0});
      CHECK(span.single_nvlink_domain);
      CHECK(span.link_class() == "nvlink");
      CHECK(span.bottleneck_bytes_per_s == kNvlink);
    }
  }
  const RankGroup& cp = layout.group_of(GroupFamily::kAttnCp, 0);
  CHECK(cp.ranks.size() == 8);
  CHECK(placement.span(cp.ranks).bottleneck_bytes_per_s == kNvlink);
  check_all_spans(layout, placement);
}

TEST_CASE("placement: tp 16 on two nodes crosses the network", "[placement]") {
  const RankLayout layout(make_config(16));
  const Placement placement(layout, load_cluster("h200-sxm", 2));
  CHECK(placement.location(7) == GpuLocation{0, 7});
  CHECK(placement.location(8) == GpuLocation{1, 0});
  CHECK(placement.location(15) == GpuLocation{1, 7});

  const GroupSpan tp = placement.span(layout.group_of(GroupFamily::kTp, 0).ranks);
  CHECK(tp.nodes == std::vector<int>{0, 1});
  CHECK_FALSE(tp.single_nvlink_domain);
  CHECK(tp.link_class() == "network");
  CHECK(tp.bottleneck_bytes_per_s == kNicShare);

  // The same layout over the 2:1 fat tree halves the bottleneck.
  const Placement fat(layout, load_cluster("h200-sxm-fat-tree", 2));
  CHECK(fat.span(layout.group_of(GroupFamily::kTp, 0).ranks).bottleneck_bytes_per_s == kFatTreeShare);

  // A group of the first eight ranks, or a single rank, stays inside node 0; ranks 7 and 8 straddle the boundary.
  CHECK(placement.span({0, 1, 2, 3, 4, 5, 6, 7}).single_nvlink_domain);
  CHECK(placement.span({12}).nodes == std::vector<int>{1});
  CHECK(placement.span({12}).bottleneck_bytes_per_s == kNvlink);
  CHECK(placement.span({8, 7}).nodes == std::vector<int>{0, 1});
  check_all_spans(layout, placement);
}

TEST_CASE("placement: the bottleneck never exceeds NVLink", "[placement]") {
  Cluster cluster = load_cluster("h200-sxm", 2);
  cluster.scale_out.nics_per_node = 16;
  cluster.scale_out.nic_bandwidth_bytes_per_s = 400e9;  // a network faster than NVLink: NVLink stays the limit
  const RankLayout layout(make_config(16));
  const Placement placement(layout, cluster);
  CHECK(placement.span(layout.group_of(GroupFamily::kTp, 0).ranks).bottleneck_bytes_per_s == kNvlink);
}

TEST_CASE("placement: 16 nodes with pipeline and plain data parallelism", "[placement]") {
  // tp 8 × pp 4 = 32 ranks per world, 4 plain-DP replicas: 128 GPUs, 16 nodes.
  const RankLayout layout(make_config(8, 4, 4));
  const Placement placement(layout, load_cluster("h200-sxm", 16));
  CHECK(placement.world_size() == 32);
  CHECK(placement.replicas() == 4);
  CHECK(placement.gpus_used() == 128);
  for (int replica = 0; replica < 4; ++replica) {
    for (int rank = 0; rank < 32; ++rank) {
      const int global = replica * 32 + rank;
      CHECK(placement.replica_location(replica, rank) == GpuLocation{global / 8, global % 8});
    }
  }
  CHECK(placement.replica_location(0, 5) == placement.location(5));
  CHECK(placement.replica_location(3, 31) == GpuLocation{15, 7});

  // Every TP group fills one node; every PP group has one rank per stage, on 4 nodes.
  for (const RankGroup& group : layout.groups(GroupFamily::kTp)) {
    const GroupSpan span = placement.span(group.ranks);
    CHECK(span.single_nvlink_domain);
    CHECK(span.nodes == std::vector<int>{group.index});
  }
  for (const RankGroup& group : layout.groups(GroupFamily::kPp)) {
    const GroupSpan span = placement.span(group.ranks);
    CHECK(span.nodes == std::vector<int>{0, 1, 2, 3});
    CHECK(span.bottleneck_bytes_per_s == kNicShare);
    CHECK(placement.span(group.ranks, 3).nodes == std::vector<int>{12, 13, 14, 15});
  }
  check_all_spans(layout, placement);
}

TEST_CASE("placement: 16 nodes with DP attention and context parallelism", "[placement]") {
  // tp 16 (attention: dp 2 × cp 2 × attn_tp 4; MoE: ep 16), pp 8: one world of 128 GPUs.
  const RankLayout layout(make_config(16, 8, 2, true, 2, 16));
  const Placement placement(layout, load_cluster("h200-sxm", 16));
  CHECK(placement.replicas() == 1);
  CHECK(placement.gpus_used() == 128);
  for (const RankGroup& group : layout.groups(GroupFamily::kTp)) {
    CHECK(placement.span(group.ranks).nodes.size() == 2);
  }
  for (const RankGroup& group : layout.groups(GroupFamily::kAttnTp)) {
    CHECK(placement.span(group.ranks).single_nvlink_domain);
  }
  for (const RankGroup& group : layout.groups(GroupFamily::kAttnCp)) {
    CHECK(placement.span(group.ranks).single_nvlink_domain);  // cp ranks are attn_tp apart inside a DP block of 8
  }
  for (const RankGroup& group : layout.groups(GroupFamily::kMoeEp)) {
    const GroupSpan span = placement.span(group.ranks);
    CHECK_FALSE(span.single_nvlink_domain);
    CHECK(span.bottleneck_bytes_per_s == kNicShare);
  }
  check_all_spans(layout, placement);
}

TEST_CASE("placement: replicas that start mid-node span different nodes", "[placement]") {
  // tp 4 × pp 3 = 12 ranks, 2 plain-DP replicas on 3 nodes of 8: replica 1 starts at GPU 12, in node 1.
  const RankLayout layout(make_config(4, 3, 2));
  const Placement placement(layout, load_cluster("h200-sxm", 3));
  const std::vector<int> pp0 = layout.group_of(GroupFamily::kPp, 0).ranks;
  CHECK(pp0 == std::vector<int>{0, 4, 8});
  CHECK(placement.span(pp0, 0).nodes == std::vector<int>{0, 1});
  CHECK(placement.span(pp0, 1).nodes == std::vector<int>{1, 2});
  const std::vector<int> tp1 = layout.groups(GroupFamily::kTp)[1].ranks;  // ranks 4..7: GPUs 16..19 in replica 1
  CHECK(placement.span(tp1, 0).nodes == std::vector<int>{0});
  CHECK(placement.span(tp1, 1).nodes == std::vector<int>{2});
  check_all_spans(layout, placement);
}

TEST_CASE("placement: a cluster too small for the layout is an error naming both counts", "[placement]") {
  CHECK_THAT(placement_error(make_config(8, 2), load_cluster("h200-sxm", 1)),
             Contains("16 GPUs") && Contains("has 8 GPUs") && Contains("--tp-size 8") && Contains("--pp-size 2") &&
                 Contains("--nodes 1"));
  CHECK_THAT(placement_error(make_config(8, 1, 3), load_cluster("h200-sxm", 2)),
             Contains("24 GPUs") && Contains("has 16 GPUs") && Contains("--dp-size 3") && Contains("--nodes 2"));
  CHECK_THAT(placement_error(make_config(16), load_cluster("h100-sxm", 1)),
             Contains("16 GPUs") && Contains("'h100-sxm' has 8 GPUs"));
  // Exactly enough is fine, and spare GPUs stay unused.
  CHECK(Placement(RankLayout(make_config(8, 1, 3)), load_cluster("h200-sxm", 3)).gpus_used() == 24);
  CHECK(Placement(RankLayout(make_config(4)), load_cluster("h200-sxm", 2)).gpus_used() == 4);
}

TEST_CASE("placement: an invalid cluster built in code is rejected", "[placement]") {
  Cluster cluster = load_cluster("h200-sxm", 1);
  cluster.scale_up.bandwidth_bytes_per_s = 0;
  const RankLayout layout(make_config(8));
  CHECK_THROWS_WITH(Placement(layout, cluster), Contains("scale_up.bandwidth_bytes_per_s"));
}

TEST_CASE("placement: misuse of span is an internal error", "[placement]") {
  const RankLayout layout(make_config(8));
  const Placement placement(layout, load_cluster("h200-sxm", 1));
  CHECK_THROWS_AS(placement.span({}), InternalError);
  CHECK_THROWS_AS(placement.span({8}), InternalError);
  CHECK_THROWS_AS(placement.span({-1}), InternalError);
  CHECK_THROWS_AS(placement.span({0}, 1), InternalError);
}

}  // namespace
}  // namespace paratwin
