// Streams, dependencies, synchronization, overlap, determinism, fast mode and reuse of identical instances.

#include <catch2/catch.hpp>

#include "models/model_spec.hpp"
#include "models/schedule_builder.hpp"
#include "tests/sim/sim_test_util.hpp"
#include "traces/trace.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

// 100 µs of compute at the bf16 roofline with efficiency 1 is hard to hit exactly; use memory-bound ops instead:
// bytes / (4.8e12 × 2903/3350) + 0.9 µs.
ComputeOp busy(double seconds) {
  const double bw = 4.8e12 * 2903.0 / 3350.0;
  return cost(0, (seconds - 0.9e-6) * bw, ComputeKind::kResidualAdd);
}

}  // namespace

TEST_CASE("a collective starts when its last member arrives, and events span from each rank's arrival", "[sim][engine]") {
  ScheduleMaker maker(2);
  const int c0 = maker.compute(0, busy(100e-6));
  maker.collective({0, 1}, CollectiveKind::kAllReduce, 1 << 20, {{c0}, {}});
  const SimResult r = simulate(maker.get(), place(2, h200_cluster(1)), alpha_beta());
  const Event& late = event(r.trace, 0, 1);
  const Event& early = event(r.trace, 1, 0);
  const double ar = 2.0 * 0.5 * (1 << 20) / 450e9 + 2 * 0.6e-6;
  CHECK(event(r.trace, 0, 0).end_s == Approx(100e-6));
  CHECK(late.start_s == Approx(100e-6));
  CHECK(early.start_s == 0.0);
  CHECK(late.end_s == early.end_s);
  CHECK(late.end_s == Approx(100e-6 + ar).epsilon(1e-9));
  // Rank 1 waited in the collective with nothing to compute: all of it is exposed.
  CHECK(r.summary.exposed_comm_s[1] == Approx(late.end_s));
  CHECK(r.summary.exposed_comm_s[0] == Approx(ar).epsilon(1e-9));
}

TEST_CASE("compute and comm streams overlap unless a dependency orders them", "[sim][engine]") {
  const std::int64_t bytes = std::int64_t{16} << 20;  // all-reduce ≈ 65 µs on 2 GPUs
  const double ar = 2.0 * 0.5 * static_cast<double>(bytes) / 450e9 + 2 * 0.6e-6;
  REQUIRE(ar < 100e-6);
  // Overlapped: the collective has no dependency on the compute op.
  ScheduleMaker overlapped(2);
  for (int r = 0; r < 2; ++r) overlapped.compute(r, busy(100e-6));
  overlapped.collective({0, 1}, CollectiveKind::kAllReduce, bytes);
  const SimResult a = simulate(overlapped.get(), place(2, h200_cluster(1)), alpha_beta());
  CHECK(a.summary.end_to_end_s == Approx(100e-6));
  CHECK(a.summary.critical_exposed_comm_s == Approx(0.0).margin(1e-15));
  // Serialized: the collective depends on the compute op.
  ScheduleMaker serial(2);
  for (int r = 0; r < 2; ++r) serial.compute(r, busy(100e-6));
  serial.collective({0, 1}, CollectiveKind::kAllReduce, bytes, {{0}, {0}});
  const SimResult b = simulate(serial.get(), place(2, h200_cluster(1)), alpha_beta());
  CHECK(b.summary.end_to_end_s == Approx(100e-6 + ar).epsilon(1e-9));
  CHECK(b.summary.critical_exposed_comm_s == Approx(ar).epsilon(1e-9));
  // The per-kind breakdown sees one all_reduce per rank.
  bool found = false;
  for (const KindBreakdown& k : b.summary.kinds) {
    if (k.kind == "all_reduce") {
      found = true;
      CHECK(k.count == 2);
      CHECK(k.critical_rank_s == Approx(ar).epsilon(1e-9));
    }
  }
  CHECK(found);
}

TEST_CASE("same inputs give byte-identical traces, several simulations per process", "[sim][engine]") {
  const Schedule s = deepseek_like_prefill(16, 8, 3, 8192);
  const Placement p = place(16, h200_cluster(2));
  const SimResult a = simulate(s, p, SimOptions{});
  const SimResult b = simulate(s, p, SimOptions{});
  REQUIRE(a.trace.events.size() == b.trace.events.size());
  CHECK(write_chrome_trace(a.trace) == write_chrome_trace(b.trace));
  CHECK(a.summary.end_to_end_s == b.summary.end_to_end_s);
  CHECK(a.trace.meta.backend == "sim");
  CHECK(a.trace.meta.schedule_hash.size() == 16);
  // And the trace reads back.
  CHECK(read_chrome_trace(write_chrome_trace(a.trace), "mem").events == a.trace.events);
}

TEST_CASE("identical isolated groups are simulated once and reused", "[sim][engine]") {
  // Four TP groups of 8 on four nodes, one all-reduce each: the first is simulated, the others reuse it.
  ScheduleMaker maker(32);
  for (int g = 0; g < 4; ++g) {
    std::vector<int> group;
    for (int i = 0; i < 8; ++i) group.push_back(g * 8 + i);
    maker.collective(group, CollectiveKind::kAllReduce, std::int64_t{32} << 20);
  }
  const SimResult r = simulate(maker.get(), place(32, h200_cluster(4)), SimOptions{});
  CHECK(r.summary.reused_instances == 3);
  CHECK(r.summary.simgrid_tasks == 1);
  for (int rank = 8; rank < 32; rank += 8) CHECK(event(r.trace, rank, 0).end_s == event(r.trace, 0, 0).end_s);
}

TEST_CASE("fast mode reproduces the full simulation of repeated layers", "[sim][engine][fast]") {
  const Schedule s = deepseek_like_prefill(16, 8, 8, 16384);
  const Placement p = place(16, h200_cluster(2));
  const SimResult full = simulate(s, p, SimOptions{});
  SimOptions fast_options;
  fast_options.fast = true;
  const SimResult fast = simulate(s, p, fast_options);
  CHECK(fast.summary.layers_reused == 6);
  REQUIRE(fast.trace.events.size() == full.trace.events.size());
  CHECK(fast.summary.end_to_end_s == Approx(full.summary.end_to_end_s).epsilon(1e-6));
  for (std::size_t i = 0; i < full.trace.events.size(); ++i) {
    const Event& f = full.trace.events[i];
    const Event& q = fast.trace.events[i];
    REQUIRE(f.rank == q.rank);
    REQUIRE(f.op == q.op);
    REQUIRE(f.name == q.name);
    CHECK(q.start_s == Approx(f.start_s).epsilon(1e-6).margin(1e-12));
    CHECK(q.end_s == Approx(f.end_s).epsilon(1e-6).margin(1e-12));
  }
  // Link bytes count the reused layers too.
  REQUIRE(!full.summary.busiest_links.empty());
  CHECK(fast.summary.busiest_links.front().bytes == Approx(full.summary.busiest_links.front().bytes));
}

TEST_CASE("pipeline send/recv chains across nodes", "[sim][engine]") {
  ScheduleMaker maker(16);
  const int c = maker.compute(0, busy(50e-6));
  const auto [send, recv] = maker.send_recv(0, 8, std::int64_t{10} << 20, {c}, {});
  maker.compute(8, busy(50e-6), {recv});
  const SimResult r = simulate(maker.get(), place(16, h200_cluster(2)), alpha_beta());
  const double hop = 2.7e-6 + static_cast<double>(std::int64_t{10} << 20) / 50e9;
  CHECK(event(r.trace, 0, send).end_s == Approx(50e-6 + hop).epsilon(1e-9));
  CHECK(event(r.trace, 8, 1).end_s == Approx(100e-6 + hop).epsilon(1e-9));
  CHECK(r.summary.critical_rank == 8);
}

TEST_CASE("the Backend interface returns the same trace", "[sim][engine]") {
  ScheduleMaker maker(8);
  std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  maker.collective(all, CollectiveKind::kAllGather, 1 << 20);
  const Placement p = place(8, h200_cluster(1));
  auto backend = make_sim_backend(SimOptions{});
  CHECK(backend->name() == "sim");
  const Trace t = backend->run(maker.get(), p);
  CHECK(t == simulate(maker.get(), p, SimOptions{}).trace);
}

TEST_CASE("ring CP: a step's send and recv are posted together, so the ring runs instead of deadlocking",
          "[sim][engine]") {
  ParallelConfig config;
  config.tp_size = 2;
  config.attn_cp_size = 2;
  ScheduleOptions options;
  options.prompt_tokens = 4096;
  options.layers = 1;
  options.cp_algorithm = CpAlgorithm::kRing;
  options.cp_split = CpSplit::kZigzag;
  const auto schedule = build_schedule(load_model("llama-3.1-8b"), config, options);
  const SimResult r = simulate(schedule, place(2, h200_cluster(1)), SimOptions{});
  REQUIRE(r.summary.end_to_end_s > 0);
  const Event* send = nullptr;
  const Event* recv = nullptr;
  for (const auto& e : r.trace.events) {
    if (e.rank == 0 && e.name == "L0.attn.ring_send0") send = &e;
    if (e.rank == 0 && e.name == "L0.attn.ring_recv0") recv = &e;
  }
  REQUIRE(send != nullptr);
  REQUIRE(recv != nullptr);
  // The receive is posted with the send (not after it on the comm stream) and the block arrives while it is sent.
  CHECK(recv->start_s <= send->start_s);
  CHECK(recv->end_s == Approx(send->end_s).epsilon(1e-6));
}
