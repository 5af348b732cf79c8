// The CUDA backend's planning logic, on CPU: communicator splits, op → NCCL call translation, dependency → events.
#include <algorithm>
#include <catch2/catch.hpp>

#include "backend/cuda_plan/comm_plan.hpp"
#include "backend/cuda_plan/event_plan.hpp"
#include "backend/cuda_plan/nccl_call_plan.hpp"
#include "models/builders/moe_routing.hpp"
#include "models/schedule_json.hpp"
#include "tests/backend/cuda_test_models.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::cuda_plan;
using namespace paratwin::test;

namespace {

// Every split family: ranks sharing a color are exactly one group, keys are positions.
void check_splits_mirror_groups(const RankLayout& layout, const CommPlan& plan) {
  for (const auto family : kAllFamilies) {
    const auto& fc = plan.of(family);
    if (fc.source != CommSource::kSplit) continue;
    for (const auto& g : layout.groups(family)) {
      for (std::size_t pos = 0; pos < g.ranks.size(); ++pos) {
        const auto r = static_cast<std::size_t>(g.ranks[pos]);
        CHECK(fc.color[r] == g.index);
        CHECK(fc.key[r] == static_cast<int>(pos));
      }
      for (int r = 0; r < layout.world_size(); ++r) {
        const bool member = std::find(g.ranks.begin(), g.ranks.end(), r) != g.ranks.end();
        CHECK((fc.color[static_cast<std::size_t>(r)] == g.index) == member);
      }
    }
  }
}

}  // namespace

TEST_CASE("communicator plan: families aliasing TP share the TP communicator, others split", "[cuda_plan]") {
  auto c = parallel(8, 2);  // attn_cp 2, attn_tp 4, moe_tp 8 (= tp)
  c.pp_size = 2;
  const RankLayout layout(c);
  const auto plan = plan_communicators(layout);
  CHECK(plan.world_size == 16);
  CHECK(plan.of(GroupFamily::kTp).source == CommSource::kSplit);
  CHECK(plan.of(GroupFamily::kAttnCp).source == CommSource::kSplit);
  CHECK(plan.of(GroupFamily::kAttnTp).source == CommSource::kSplit);
  CHECK(plan.of(GroupFamily::kMoeTp).source == CommSource::kAliasTp);
  CHECK(plan.of(GroupFamily::kPp).source == CommSource::kSplit);
  CHECK(plan.of(GroupFamily::kAttnDp).source == CommSource::kNone);
  check_splits_mirror_groups(layout, plan);
  // ATTN_CP of stage 1: ranks 8..15 with attn_tp 4 → groups {8,12}, {9,13}, ...
  const auto& cp = plan.of(GroupFamily::kAttnCp);
  CHECK(cp.color[12] == cp.color[8]);
  CHECK(cp.key[8] == 0);
  CHECK(cp.key[12] == 1);
  CHECK(cp.color[9] != cp.color[8]);
}

TEST_CASE("communicator plan of every small layout mirrors the layout's groups", "[cuda_plan]") {
  for (const int tp : {1, 2, 4, 8}) {
    for (const int cp : {1, 2, 4}) {
      for (const int ep : {1, 2, 4}) {
        if (tp % cp != 0 || tp % ep != 0) continue;
        auto c = parallel(tp, cp, 2, ep);
        const RankLayout layout(c);
        const auto plan = plan_communicators(layout);
        INFO("tp " << tp << " cp " << cp << " ep " << ep << ": " << describe(plan, layout));
        check_splits_mirror_groups(layout, plan);
        for (const auto family : kAllFamilies) {
          if (family == GroupFamily::kTp || family == GroupFamily::kAttnDp) continue;
          CHECK((plan.of(family).source == CommSource::kAliasTp) == layout.aliases_tp(family));
        }
      }
    }
  }
}

TEST_CASE("a swapped group position changes only the two keys", "[cuda_plan]") {
  SECTION("a family with its own communicator") {
    const RankLayout layout(parallel(4, 2));  // attn_cp groups {0, 2}, {1, 3}
    auto plan = plan_communicators(layout);
    const auto before = plan.of(GroupFamily::kAttnCp).key;
    swap_group_positions(plan, layout, GroupFamily::kAttnCp, 1, 0, 1);
    const auto& after = plan.of(GroupFamily::kAttnCp).key;
    CHECK(after[0] == before[0]);
    CHECK(after[2] == before[2]);
    CHECK(after[1] == 1);
    CHECK(after[3] == 0);
    CHECK_THROWS_AS(swap_group_positions(plan, layout, GroupFamily::kAttnCp, 0, 0, 2), Error);
    CHECK_THROWS_AS(swap_group_positions(plan, layout, GroupFamily::kAttnDp, 0, 0, 1), Error);
  }
  SECTION("a family aliasing TP swaps in the TP communicator") {
    const RankLayout layout(parallel(4, 4));
    auto plan = plan_communicators(layout);
    REQUIRE(plan.of(GroupFamily::kAttnCp).source == CommSource::kAliasTp);
    swap_group_positions(plan, layout, GroupFamily::kAttnCp, 0, 1, 3);
    const auto& after = plan.of(GroupFamily::kTp).key;
    CHECK(after == std::vector<int>{0, 3, 2, 1});
  }
}

TEST_CASE("collectives translate to NCCL calls with exact counts and buffers", "[cuda_plan]") {
  CollectiveOp op;
  op.group_size = 4;
  op.bytes = 4096;
  op.dtype = DType::kBf16;
  SECTION("all-gather: count per rank, output group_size × bytes") {
    op.kind = CollectiveKind::kAllGather;
    const auto c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kAllGather);
    CHECK(c.type == NcclType::kBf16);
    CHECK(c.count == 2048);
    CHECK(c.send_buffer_bytes == 4096);
    CHECK(c.recv_buffer_bytes == 4 * 4096);
  }
  SECTION("reduce-scatter: count is the receive buffer") {
    op.kind = CollectiveKind::kReduceScatter;
    op.dtype = DType::kFp32;
    const auto c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kReduceScatter);
    CHECK(c.count == 1024);
    CHECK(c.send_buffer_bytes == 4 * 4096);
    CHECK(c.recv_buffer_bytes == 4096);
  }
  SECTION("all-reduce in place, broadcast with root") {
    op.kind = CollectiveKind::kAllReduce;
    auto c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kAllReduce);
    CHECK(c.count == 2048);
    CHECK(c.recv_buffer_bytes == 0);
    op.kind = CollectiveKind::kBroadcast;
    op.root = 3;
    c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kBroadcast);
    CHECK(c.root == 3);
    op.root = 4;
    CHECK_THROWS_AS(translate_collective(op, "x"), Error);
  }
  SECTION("odd byte counts move raw bytes, but never in a reduction") {
    op.kind = CollectiveKind::kAllGather;
    op.bytes = 4097;
    const auto c = translate_collective(op, "x");
    CHECK(c.type == NcclType::kUint8);
    CHECK(c.count == 4097);
    op.kind = CollectiveKind::kAllReduce;
    CHECK_THROWS_AS(translate_collective(op, "L0.attn.o_all_reduce"), Error);
  }
  SECTION("uniform all-to-all is ncclAlltoAll; uneven is grouped send/recv at prefix offsets") {
    op.kind = CollectiveKind::kAllToAll;
    op.send_bytes = {1024, 1024, 1024, 1024};
    op.recv_bytes = {1024, 1024, 1024, 1024};
    auto c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kAllToAll);
    CHECK(c.count == 512);
    op.send_bytes = {0, 200, 400, 600};
    op.recv_bytes = {100, 0, 300, 500};
    c = translate_collective(op, "x");
    CHECK(c.function == NcclFunction::kGroupedSendRecv);
    CHECK(c.send_buffer_bytes == 1200);
    CHECK(c.recv_buffer_bytes == 900);
    const std::vector<PeerTransfer> want = {{false, 0, 0, 50},   {true, 1, 0, 100},   {true, 2, 100, 200},
                                            {false, 2, 50, 150}, {true, 3, 300, 300}, {false, 3, 200, 250}};
    CHECK(c.transfers == want);
    op.send_bytes.pop_back();
    CHECK_THROWS_AS(translate_collective(op, "x"), Error);
  }
}

TEST_CASE("P2P ops translate to ncclSend/ncclRecv on the world communicator", "[cuda_plan]") {
  P2POp p{true, 5, 8192, DType::kBf16, 7, -1};
  auto c = translate_p2p(p, "pp_send");
  CHECK(c.function == NcclFunction::kSend);
  CHECK(c.world_comm);
  CHECK(c.peer == 5);
  CHECK(c.count == 4096);
  p.is_send = false;
  c = translate_p2p(p, "pp_recv");
  CHECK(c.function == NcclFunction::kRecv);
  CHECK(c.recv_buffer_bytes == 8192);
}

namespace {

Op make_op(int index, Stream stream, std::vector<int> deps, std::int64_t p2p_group = -2) {
  Op op;
  op.index = index;
  op.name = "op" + std::to_string(index);
  op.stream = stream;
  op.deps = std::move(deps);
  if (p2p_group >= -1) {
    op.body = P2POp{true, 1, 16, DType::kBf16, index, p2p_group};
  } else if (stream == Stream::kComm) {
    op.body = CollectiveOp{};
  } else {
    op.body = ComputeOp{};
  }
  return op;
}

// Every cross-stream dependency is covered: some launch on the op's stream at or before its own waits for an op of
// the other stream at or after the dependency.
void check_covered(const std::vector<Op>& ops, const EventPlan& plan) {
  for (const auto& op : ops) {
    const int own = plan.launch_of[static_cast<std::size_t>(op.index)];
    for (const int d : op.deps) {
      if (ops[static_cast<std::size_t>(d)].stream == op.stream) {
        CHECK(plan.launch_of[static_cast<std::size_t>(d)] < own);
        continue;
      }
      bool covered = false;
      for (int l = 0; l <= own; ++l) {
        const auto& launch = plan.launches[static_cast<std::size_t>(l)];
        covered = covered || (launch.stream == op.stream && launch.wait_for >= d);
      }
      INFO("op " << op.index << " dep " << d);
      CHECK(covered);
    }
  }
}

}  // namespace

TEST_CASE("event plan: only the latest cross-stream dependency is waited for, once", "[cuda_plan]") {
  const auto C = Stream::kCompute, M = Stream::kComm;
  const std::vector<Op> ops = {make_op(0, C, {}),     make_op(1, M, {0}),    make_op(2, C, {0}),
                               make_op(3, C, {1, 2}), make_op(4, M, {2, 3}), make_op(5, M, {1, 2}),
                               make_op(6, C, {1, 5})};
  const auto plan = plan_events(ops, 0);
  REQUIRE(plan.launches.size() == 7);
  CHECK(plan.launches[1].wait_for == 0);
  CHECK(plan.launches[2].wait_for == -1);  // same stream
  CHECK(plan.launches[3].wait_for == 1);
  CHECK(plan.launches[4].wait_for == 3);
  CHECK(plan.launches[5].wait_for == -1);  // op 3 ≥ 2 already waited for on the comm stream
  CHECK(plan.launches[6].wait_for == 5);
  CHECK(plan.waits == 4);
  CHECK(plan.needs_done_event == std::vector<bool>{true, true, false, true, false, true, false});
  check_covered(ops, plan);
}

TEST_CASE("event plan posts a P2P group together and rejects split groups", "[cuda_plan]") {
  const auto C = Stream::kCompute, M = Stream::kComm;
  std::vector<Op> ops = {make_op(0, C, {}), make_op(1, M, {0}, 3), make_op(2, M, {}, 3), make_op(3, C, {1, 2})};
  auto plan = plan_events(ops, 0);
  REQUIRE(plan.launches.size() == 3);
  CHECK(plan.launches[1].ops == std::vector<int>{1, 2});
  CHECK(plan.launches[1].wait_for == 0);
  CHECK(plan.launches[2].wait_for == 2);
  CHECK(plan.launch_of == std::vector<int>{0, 1, 1, 2});
  ops.push_back(make_op(4, M, {}, 3));
  CHECK_THROWS_AS(plan_events(ops, 0), Error);
  ops.pop_back();
  ops[3].deps = {4};
  CHECK_THROWS_AS(plan_events(ops, 0), Error);
}

TEST_CASE("event plans of real schedules cover every dependency", "[cuda_plan]") {
  const auto model = tiny_llama();
  const auto moe = tiny_qwen_moe();
  struct Case {
    const ModelSpec* model;
    ParallelConfig config;
    ScheduleOptions options;
  };
  auto ring = prefill(64);
  ring.cp_algorithm = CpAlgorithm::kRing;
  const std::vector<Case> cases = {{&model, parallel(2, 2), prefill(64)},
                                   {&model, parallel(4, 2), prefill(64, CpSplit::kZigzag)},
                                   {&model, parallel(2, 2), ring},
                                   {&model, parallel(1, 1, 2), prefill(64)},
                                   {&moe, parallel(2, 2, 1, 2), prefill(64)}};
  for (const auto& c : cases) {
    const auto s = build_schedule(*c.model, c.config, c.options);
    for (std::size_t r = 0; r < s.ranks.size(); ++r) {
      const auto plan = plan_events(s.ranks[r], static_cast<int>(r));
      check_covered(s.ranks[r], plan);
      // Translation of every communication op succeeds.
      for (const auto& op : s.ranks[r]) {
        if (const auto* cl = std::get_if<CollectiveOp>(&op.body)) CHECK_NOTHROW(translate_collective(*cl, op.name));
        if (const auto* p = std::get_if<P2POp>(&op.body)) CHECK_NOTHROW(translate_p2p(*p, op.name));
      }
    }
  }
}

TEST_CASE("per-token routing: MoE schedules count exactly the rows the tokens' experts need", "[cuda_plan]") {
  const auto moe = tiny_qwen_moe();
  const auto E = moe.moe->num_experts, topk = moe.moe->experts_per_token, H = moe.hidden_size;
  auto options = prefill(128);
  options.routing.load = RoutingLoad::kPerToken;
  options.routing.seed = 7;
  // All-to-all, EP=2 (4 experts per rank): what all sources send to rank j = the tokens with an expert on j.
  const auto a2a = build_schedule(moe, parallel(2, 2, 1, 2), options);
  REQUIRE(a2a.meta.per_token_routing_seed == std::optional<std::uint64_t>{7});
  CHECK(schedule_from_json(schedule_to_json(a2a), "a2a").meta == a2a.meta);  // the seed survives a round trip
  for (int layer = 0; layer < 2; ++layer) {
    std::vector<std::int64_t> want(2, 0), got(2, 0);
    for (std::int64_t pos = 0; pos < 128; ++pos) {
      std::vector<char> on(2, 0);
      for (const int e : build::token_experts(E, topk, 7, layer, 0, pos)) on[static_cast<std::size_t>(e / 4)] = 1;
      for (std::size_t j = 0; j < 2; ++j) want[j] += on[j];
    }
    for (const auto& rank : a2a.ranks) {
      for (const auto& op : rank) {
        const auto* cl = std::get_if<CollectiveOp>(&op.body);
        if (cl == nullptr || op.layer != layer || op.name.find("moe.dispatch_all_to_all") == std::string::npos)
          continue;
        for (std::size_t j = 0; j < 2; ++j) got[j] += cl->send_bytes[j] / (2 * H);
      }
    }
    CHECK(got == want);
    // The token side's sums read back one row per (token, rank holding one of its experts), the rows dispatched, into
    // the ranks' 128 tokens (the binder's back map: moe.combine_sum).
    std::int64_t returned = 0, tokens = 0;
    for (const auto& rank : a2a.ranks) {
      for (const auto& op : rank) {
        if (op.layer != layer || op.name.find("moe.combine_sum") == std::string::npos) continue;
        const auto& sum = std::get<ComputeOp>(op.body).shape;
        returned += sum.m;
        tokens += sum.out_rows;
      }
    }
    CHECK(returned == want[0] + want[1]);
    CHECK(tokens == 128);
  }
  // Gather mode over ATTN_CP=2 with 97 tokens: shards of 49 (one padding row on the second rank); every gathered row
  // routes to top-k experts and the real tokens' rows are among them.
  options.prompt_tokens = 97;
  const auto gather = build_schedule(moe, parallel(2, 2), options);
  std::vector<std::int64_t> real(static_cast<std::size_t>(E), 0);
  for (std::int64_t pos = 0; pos < 97; ++pos) {
    for (const int e : build::token_experts(E, topk, 7, 0, 0, pos)) ++real[static_cast<std::size_t>(e)];
  }
  bool found = false;
  for (const auto& op : gather.ranks[0]) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c == nullptr || op.layer != 0 || c->kind != ComputeKind::kGroupedGemm) continue;
    found = true;
    std::int64_t total = 0;
    for (std::size_t e = 0; e < c->shape.group_rows.size(); ++e) {
      total += c->shape.group_rows[e];
      CHECK(c->shape.group_rows[e] >= real[e]);
    }
    CHECK(total == 98 * topk);
  }
  CHECK(found);
  // The layouts it cannot describe are refused.
  CHECK_THROWS_WITH(build_schedule(moe, parallel(2), options), Catch::Contains("per-token expert routing"));
}

TEST_CASE("a group override builds a family's communicators from other rank lists", "[cuda_plan]") {
  // tp 2, pp 2, attn_cp 2, ep 2: the MOE_EP groups are the TP groups {0,1} {2,3} (one per stage), aliasing TP.
  const RankLayout layout(parallel(2, 2, 2, 2));
  auto plan = plan_communicators(layout);
  REQUIRE(plan.of(GroupFamily::kMoeEp).source == CommSource::kAliasTp);
  // The draft that strides MoE groups over the world by tp: {0,2} {1,3} run from stage 0 into stage 1.
  override_groups(plan, GroupFamily::kMoeEp, {{0, 2}, {1, 3}});
  const auto& fc = plan.of(GroupFamily::kMoeEp);
  CHECK(fc.source == CommSource::kSplit);
  CHECK(fc.color == std::vector<int>{0, 1, 0, 1});
  CHECK(fc.key == std::vector<int>{0, 0, 1, 1});
  CHECK(layout.coords(0).pp_rank != layout.coords(2).pp_rank);
  CHECK(plan.of(GroupFamily::kTp).source == CommSource::kSplit);  // TP itself untouched
  CHECK_THROWS_WITH(override_groups(plan, GroupFamily::kMoeEp, {{0, 2}, {1}}),
                    Catch::Contains("rank 3 is in no group"));
  CHECK_THROWS_WITH(override_groups(plan, GroupFamily::kMoeEp, {{0, 2}, {2, 1, 3}}), Catch::Contains("two groups"));
}
