// The schedule checker must catch each way a schedule can be broken.
#include <catch2/catch.hpp>

#include "tests/schedule/schedule_test_util.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

bool mentions(const std::vector<std::string>& v, const std::string& text) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.find(text) != std::string::npos; });
}

Op* find_op(Schedule& s, int rank, const std::string& name) {
  for (auto& op : s.ranks[static_cast<std::size_t>(rank)]) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a missing recv is reported", "[schedule][checks]") {
  auto s = build_schedule(load_model("llama-3.1-8b"), cp_config(2, 1, 1, 2), prefill(64, 2));
  auto* recv = find_op(s, 2, "pp_recv");
  REQUIRE(recv != nullptr);
  std::get<P2POp>(recv->body).match += 1000;
  CHECK(mentions(schedule_violations(s), "has no recv"));
}

TEST_CASE("collectives issued in a different order are reported", "[schedule][checks]") {
  auto s = build_schedule(load_model("llama-3.1-8b"), cp_config(2, 1), prefill(64, 2));
  auto* first = find_op(s, 1, "L0.attn.o_all_reduce");
  auto* second = find_op(s, 1, "L0.mlp.all_reduce");
  REQUIRE(first != nullptr);
  REQUIRE(second != nullptr);
  std::swap(std::get<CollectiveOp>(first->body).instance, std::get<CollectiveOp>(second->body).instance);
  CHECK(mentions(schedule_violations(s), "different order"));
}

TEST_CASE("a collective with mismatched bytes is reported", "[schedule][checks]") {
  auto s = build_schedule(load_model("llama-3.1-8b"), cp_config(4, 4), prefill(256, 1));
  auto* gather = find_op(s, 3, "L0.attn.kv_all_gather");
  REQUIRE(gather != nullptr);
  std::get<CollectiveOp>(gather->body).bytes += 2;
  CHECK(mentions(schedule_violations(s), "disagrees"));
}

TEST_CASE("an all-to-all whose sends and receives do not mirror is reported", "[schedule][checks]") {
  auto s = build_schedule(load_model("qwen3-30b-a3b"), cp_config(4, 4, 4), prefill(1024, 1));
  auto* dispatch = find_op(s, 0, "L0.moe.dispatch_all_to_all");
  REQUIRE(dispatch != nullptr);
  auto& c = std::get<CollectiveOp>(dispatch->body);
  c.send_bytes[1] += 100;
  c.bytes += 100;
  CHECK(mentions(schedule_violations(s), "which expects"));
}

TEST_CASE("a wait cycle across ranks is a deadlock", "[schedule][checks]") {
  // Rank 0 all-reduces, then sends to rank 1; rank 1 receives first, then all-reduces. Each group's order and every
  // send/recv pair are fine, yet neither rank can progress.
  Schedule s;
  s.meta.config = cp_config(2, 1);
  CollectiveOp all_reduce;
  all_reduce.kind = CollectiveKind::kAllReduce;
  all_reduce.family = GroupFamily::kTp;
  all_reduce.group_size = 2;
  all_reduce.bytes = 1024;
  const auto op = [](int index, const char* name, OpBody body) {
    Op o;
    o.index = index;
    o.name = name;
    o.stream = Stream::kComm;
    o.body = std::move(body);
    return o;
  };
  s.ranks = {{op(0, "all_reduce", all_reduce), op(1, "send", P2POp{true, 1, 64, DType::kBf16, 7})},
             {op(0, "recv", P2POp{false, 0, 64, DType::kBf16, 7}), op(1, "all_reduce", all_reduce)}};
  CHECK(mentions(schedule_violations(s), "deadlock"));
  std::swap(s.ranks[1][0].body, s.ranks[1][1].body);  // rank 1 all-reduces first: sound
  std::swap(s.ranks[1][0].name, s.ranks[1][1].name);
  CHECK(schedule_violations(s).empty());
}

TEST_CASE("a dependency on a later op is reported", "[schedule][checks]") {
  auto s = build_schedule(load_model("llama-3.1-8b"), cp_config(1, 1), prefill(64, 1));
  s.ranks[0][1].deps.push_back(5);
  CHECK(mentions(schedule_violations(s), "not an earlier op"));
}
