// join_bench_phases: the traces of `paratwin bench`'s collective and compute phases joined into one trace of the
// whole sweep, every event at its op's place in the sweep's schedule.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <variant>

#include "cli/bench_phases.hpp"
#include "models/bench_schedule.hpp"
#include "models/schedule_json.hpp"
#include "topology/error.hpp"

using namespace paratwin;

namespace {

BenchScheduleOptions sweep_of(int gpus, bool collectives, bool compute) {
  BenchScheduleOptions o;
  o.gpus = gpus;
  o.max_bytes = std::int64_t{1} << 20;
  o.collectives = collectives;
  o.compute = compute;
  return o;
}

// A measured-looking trace of `schedule`: on each rank its ops one after the other, 1 µs each, from `t0_s`.
Trace trace_of(const Schedule& schedule, double t0_s, const std::string& step_s) {
  Trace t;
  t.meta.backend = "cuda";
  t.meta.schedule_hash = schedule_hash(schedule);
  t.meta.extra["median_step_s"] = step_s;
  for (std::size_t r = 0; r < schedule.ranks.size(); ++r) {
    double at_s = t0_s;
    for (std::size_t i = 0; i < schedule.ranks[r].size(); ++i) {
      const Op& op = schedule.ranks[r][i];
      Event e;
      e.rank = static_cast<int>(r);
      e.op = static_cast<int>(i);
      e.name = op.name;
      e.stream = std::holds_alternative<ComputeOp>(op.body) ? "compute" : "comm";
      e.start_s = at_s;
      e.end_s = at_s + 1e-6;
      at_s = e.end_s;
      t.events.push_back(e);
    }
  }
  return t;
}

}  // namespace

TEST_CASE("bench phases join into one trace of the whole sweep, each event at its op", "[cli][bench]") {
  for (const int gpus : {2, 4}) {
    INFO(gpus << " GPUs");
    const auto whole = build_bench_schedule(sweep_of(gpus, true, true));
    const auto collectives = trace_of(build_bench_schedule(sweep_of(gpus, true, false)), 0.0, "0.03");
    const auto compute = trace_of(build_bench_schedule(sweep_of(gpus, false, true)), 0.0, "0.06");
    const Trace joined = cli::join_bench_phases(whole, collectives, compute);
    CHECK(joined.meta.schedule_hash == schedule_hash(whole));
    CHECK(joined.meta.extra.at("collective_phase_median_step_s") == "0.03");
    CHECK(joined.meta.extra.at("compute_phase_median_step_s") == "0.06");
    CHECK(joined.meta.extra.count("median_step_s") == 0);
    std::size_t ops = 0;
    for (const auto& rank_ops : whole.ranks) ops += rank_ops.size();
    REQUIRE(joined.events.size() == ops);
    double collective_end_s = 0;
    for (const Event& e : collectives.events) collective_end_s = std::max(collective_end_s, e.end_s);
    std::size_t i = 0;
    for (std::size_t r = 0; r < whole.ranks.size(); ++r) {
      for (std::size_t op = 0; op < whole.ranks[r].size(); ++op, ++i) {
        const Event& e = joined.events[i];
        CHECK((e.rank == static_cast<int>(r) && e.op == static_cast<int>(op)));
        CHECK(e.name == whole.ranks[r][op].name);
        if (std::holds_alternative<ComputeOp>(whole.ranks[r][op].body)) CHECK(e.start_s >= collective_end_s);
      }
    }
  }
}

TEST_CASE("bench phases of another sweep are refused, naming the event", "[cli][bench]") {
  const auto whole = build_bench_schedule(sweep_of(2, true, true));
  const auto collectives = trace_of(build_bench_schedule(sweep_of(2, true, false)), 0.0, "0.03");
  auto other = sweep_of(2, false, true);
  other.gpus = 4;  // four ranks' compute ops: rank 2 is none of the 2-GPU sweep's
  const auto compute = trace_of(build_bench_schedule(other), 0.0, "0.06");
  CHECK_THROWS_WITH(cli::join_bench_phases(whole, collectives, compute),
                    Catch::Contains("compute phase") && Catch::Contains("rank 2"));
  CHECK_THROWS_WITH(cli::join_bench_phases(whole, compute, collectives), Catch::Contains("collective phase"));
}
