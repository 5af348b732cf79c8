#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/traces/trace_builders.hpp"
#include "topology/error.hpp"
#include "traces/collective_bandwidth.hpp"
#include "traces/compare.hpp"
#include "traces/compare_report.hpp"
#include "traces/error_stats.hpp"

using paratwin::Comparison;
using paratwin::GroupError;
using paratwin::Trace;
using paratwin::test::two_rank_trace;

namespace {

const GroupError& group(const std::vector<GroupError>& groups, const std::string& key) {
  for (const auto& g : groups) {
    if (g.key == key) return g;
  }
  FAIL("no group " << key);
  return groups.front();
}

Trace scaled(Trace trace, double factor) {
  for (auto& e : trace.events) {
    e.start_s *= factor;
    e.end_s *= factor;
  }
  return trace;
}

}  // namespace

TEST_CASE("error statistics use linear-interpolation quantiles", "[traces][compare]") {
  CHECK(paratwin::quantile({4, 1, 3, 2}, 0.5) == Approx(2.5));
  CHECK(paratwin::quantile({4, 1, 3, 2}, 0.9) == Approx(3.7));
  const auto stats = paratwin::error_stats({-0.1, 0.2, 0.3});
  CHECK(stats.count == 3);
  CHECK(stats.median == Approx(0.2));
  CHECK(stats.median_abs == Approx(0.2));
  CHECK(stats.p90_abs == Approx(0.28));
  CHECK(stats.mape == Approx(0.2));
  CHECK(paratwin::relative_error(1.1, 1.0) == Approx(0.1));
}

TEST_CASE("busbw factors and sizes follow nccl-tests", "[traces][compare]") {
  using paratwin::bus_bandwidth_factor;
  CHECK(bus_bandwidth_factor("all_reduce", 8) == Approx(2.0 * 7 / 8));
  CHECK(bus_bandwidth_factor("all_gather", 4) == Approx(0.75));
  CHECK(bus_bandwidth_factor("reduce_scatter", 2) == Approx(0.5));
  CHECK(bus_bandwidth_factor("all_to_all", 8) == Approx(7.0 / 8));
  CHECK(bus_bandwidth_factor("broadcast", 8) == 1.0);
  CHECK(bus_bandwidth_factor("send", 2) == 1.0);
  CHECK(bus_bandwidth_factor("recv", 2) == 1.0);
  // all_gather: our bytes is the per-rank send buffer; nccl-tests' S is the gathered output.
  auto e = paratwin::test::make_collective(0, 0, "ag", "all_gather", 4, 1000, 0, 1e-6);
  CHECK(paratwin::nccl_tests_size_bytes(e) == 4000);
  const auto bw = paratwin::nccl_tests_bandwidth(e, 1e-6);
  CHECK(bw.algbw_bytes_per_s == Approx(4e9));
  CHECK(bw.busbw_bytes_per_s == Approx(3e9));
  e.kind = "all_reduce";
  CHECK(paratwin::nccl_tests_size_bytes(e) == 1000);
  CHECK(paratwin::size_bucket_label(1 << 20) == "[1 MiB, 4 MiB)");
  CHECK(paratwin::size_bucket_label(5 << 20) == "[4 MiB, 16 MiB)");
}

TEST_CASE("compare gives exactly the known error when every time is scaled", "[traces][compare]") {
  const Trace measured = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3, "cuda");
  const Trace predicted = scaled(two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3), 1.25);
  const Comparison c = paratwin::compare_traces(predicted, measured, "p.json", "m.json");
  CHECK(c.e2e_relative_error == Approx(0.25).epsilon(1e-12));
  CHECK(c.all_ops.count == 6);
  CHECK(c.all_ops.median == Approx(0.25).epsilon(1e-12));
  CHECK(c.all_ops.p90_abs == Approx(0.25).epsilon(1e-12));
  CHECK(c.all_ops.mape == Approx(0.25).epsilon(1e-12));
  for (const auto& kind : c.by_kind) {
    CHECK(kind.stats.median == Approx(0.25).epsilon(1e-12));
    REQUIRE(kind.share_of_difference);
  }
  // The measured path (B on rank 1, C at its last arrival, D) has no gaps: the kinds explain everything.
  CHECK(*group(c.by_kind, "gemm").share_of_difference == Approx(3.0 / 4.5));
  CHECK(*group(c.by_kind, "all_gather").share_of_difference == Approx(1.0 / 4.5));
  CHECK(*group(c.by_kind, "rms_norm").share_of_difference == Approx(0.5 / 4.5));
  CHECK(*c.unexplained_share == Approx(0.0).margin(1e-12));
  CHECK_FALSE(c.divergence);
  // One bandwidth row per collective call; S = 2 × 1 MiB over the busy time 1 ms (the wait excluded).
  REQUIRE(c.collectives.size() == 1);
  CHECK(c.collectives[0].measured_s == Approx(1e-3));
  CHECK(c.collectives[0].measured_algbw == Approx(2.0 * (1 << 20) / 1e-3));
  CHECK(c.collectives[0].measured_busbw == Approx((1 << 20) / 1e-3));
  CHECK(c.collectives[0].predicted_busbw == Approx((1 << 20) / 1.25e-3));
}

TEST_CASE("compare attributes a perturbed kind's error to that kind only", "[traces][compare]") {
  const Trace measured = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3, "cuda");
  // Both gemms 10 % slow in the prediction; the rest identical.
  const Trace predicted = two_rank_trace(2.2e-3, 3.3e-3, 1e-3, 0.5e-3);
  const Comparison c = paratwin::compare_traces(predicted, measured, "p.json", "m.json");
  CHECK(group(c.by_kind, "gemm").stats.median == Approx(0.1).epsilon(1e-12));
  CHECK(group(c.by_kind, "all_gather").stats.median == Approx(0.0).margin(1e-12));
  CHECK(group(c.by_kind, "rms_norm").stats.median_abs == Approx(0.0).margin(1e-12));
  CHECK(*group(c.by_kind, "gemm").share_of_difference == Approx(1.0));
  CHECK(*group(c.by_kind, "all_gather").share_of_difference == Approx(0.0).margin(1e-12));
  CHECK(c.e2e_relative_error == Approx(0.3e-3 / 4.5e-3));
  REQUIRE(c.by_collective_size.size() == 1);
  CHECK(c.by_collective_size[0].key == "all_gather [1 MiB, 4 MiB)");
}

TEST_CASE("critical path follows the last arrival of a collective and reports the divergence", "[traces][compare]") {
  // Measured: rank 1's gemm is the late one; predicted: rank 0's.
  const Trace measured = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3, "cuda");
  const Trace predicted = two_rank_trace(3.5e-3, 3e-3, 1e-3, 0.5e-3);
  const Comparison c = paratwin::compare_traces(predicted, measured, "p.json", "m.json");
  REQUIRE(c.measured_path.size() == 3);
  CHECK(c.measured_path[0].rank == 1);
  CHECK(c.measured_path[0].name == "L0.gemm");
  CHECK(c.measured_path[1].rank == 1);
  CHECK(c.measured_path[1].kind == "all_gather");
  CHECK(c.measured_path[2].rank == 0);  // ties at the end go to the lowest rank
  CHECK(c.measured_path[2].name == "L0.norm");
  REQUIRE(c.predicted_path.size() == 3);
  CHECK(c.predicted_path[0].rank == 0);
  REQUIRE(c.divergence);
  CHECK(*c.divergence == 0);
  CHECK_THAT(paratwin::comparison_text(c), Catch::Contains("first divergence at step 0"));
}

TEST_CASE("compare refuses traces of different schedules and names the difference", "[traces][compare]") {
  const Trace measured = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3, "cuda");
  Trace other_hash = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3);
  other_hash.meta.schedule_hash = "hash-2";
  CHECK_THROWS_WITH(paratwin::compare_traces(other_hash, measured, "p.json", "m.json"),
                    Catch::Contains("different schedules") && Catch::Contains("hash-2") && Catch::Contains("hash-1"));
  Trace missing = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3);
  missing.events.erase(missing.events.begin() + 2);  // rank 0 op 2
  CHECK_THROWS_WITH(paratwin::compare_traces(missing, measured, "p.json", "m.json"),
                    Catch::Contains("rank 0 op 2 ('L0.norm') is in m.json but not in p.json"));
  Trace renamed = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3);
  renamed.events[3].name = "L0.other";
  CHECK_THROWS_WITH(paratwin::compare_traces(renamed, measured, "p.json", "m.json"),
                    Catch::Contains("rank 1 op 0 is 'L0.other'") && Catch::Contains("'L0.gemm'"));
  Trace extra = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3);
  extra.events.push_back(paratwin::test::make_event(1, 3, "L0.extra", "gemm", 5e-3, 6e-3));
  CHECK_THROWS_WITH(paratwin::compare_traces(extra, measured, "p.json", "m.json"),
                    Catch::Contains("rank 1 op 3 ('L0.extra') is in p.json but not in m.json"));
  Trace foreign = measured;
  foreign.foreign = true;
  CHECK_THROWS_WITH(paratwin::compare_traces(measured, foreign, "p.json", "f.json"),
                    Catch::Contains("f.json is not a paratwin trace"));
  Trace empty = measured;
  empty.events.clear();
  CHECK_THROWS_WITH(paratwin::compare_traces(measured, empty, "p.json", "e.json"), Catch::Contains("no events"));
}

TEST_CASE("compare CSV has one header and rectangular rows, JSON parses", "[traces][compare]") {
  const Trace measured = two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3, "cuda");
  Trace predicted = scaled(two_rank_trace(2e-3, 3e-3, 1e-3, 0.5e-3), 1.1);
  // Names with commas and quotes must be quoted in CSV.
  Trace with_comma_m = measured, with_comma_p = predicted;
  with_comma_m.events[2].name = with_comma_p.events[2].name = "norm, \"final\"";
  const Comparison c = paratwin::compare_traces(with_comma_p, with_comma_m, "p.json", "m.json");
  const std::string csv = paratwin::comparison_csv(c);
  std::istringstream lines(csv);
  std::string line;
  std::size_t header_fields = 0, rows = 0;
  while (std::getline(lines, line)) {
    std::size_t fields = 1;
    bool quoted = false;
    for (const char ch : line) {
      if (ch == '"') quoted = !quoted;
      if (ch == ',' && !quoted) ++fields;
    }
    CHECK_FALSE(quoted);
    if (rows++ == 0) header_fields = fields;
    CHECK(fields == header_fields);
  }
  CHECK(header_fields == 23);
  CHECK(rows > 10);
  CHECK_THAT(csv, Catch::Contains("\"norm, \"\"final\"\"\""));
  const auto json = nlohmann::json::parse(paratwin::comparison_json(c));
  CHECK(json.at("end_to_end").at("relative_error").get<double>() == Approx(0.1));
  CHECK(json.at("ops").size() == 6);
  CHECK(json.at("collectives").size() == 1);
}
