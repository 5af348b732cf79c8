#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "topology/error.hpp"
#include "traces/trace.hpp"

namespace {

using paratwin::Event;
using paratwin::Trace;

Trace sample_trace() {
  Trace trace;
  trace.meta.backend = "sim";
  trace.meta.schedule_hash = "abc123";
  trace.meta.model = "deepseek-v3.2";
  trace.meta.layout = "--tp 8";
  trace.meta.cluster = "h200-sxm 1x8";
  trace.meta.calibration = "";
  trace.meta.versions = {{"simgrid", "3.32"}, {"paratwin", "0.1.0"}};
  trace.meta.extra = {{"note", "unit test"}};
  Event a;
  a.rank = 0;
  a.node = 0;
  a.op = 0;
  a.name = "L0.attn.qkv_gemm";
  a.stream = "compute";
  a.layer = 0;
  a.kind = "gemm";
  a.start_s = 0.0;
  a.end_s = 1.0e-4 / 3.0;  // not exactly representable in decimal: checks the round trip
  a.bytes = 123456789012LL;
  a.flops = 2.5e12;
  Event b;
  b.rank = 0;
  b.node = 0;
  b.op = 1;
  b.name = "L0.attn.tp_all_reduce";
  b.stream = "comm";
  b.layer = 0;
  b.kind = "all_reduce";
  b.group = "tp[0]";
  b.group_size = 8;
  b.start_s = a.end_s;
  b.end_s = 7.77e-5;
  b.bytes = 1 << 20;
  Event c = a;
  c.rank = 9;
  c.node = 1;
  c.op = 0;
  trace.events = {a, b, c};
  return trace;
}

}  // namespace

TEST_CASE("trace round-trips through Chrome trace JSON", "[traces]") {
  const Trace trace = sample_trace();
  const std::string text = paratwin::write_chrome_trace(trace);
  const Trace back = paratwin::read_chrome_trace(text, "memory");
  CHECK(back == trace);
  CHECK(paratwin::write_chrome_trace(back) == text);
}

TEST_CASE("trace writing is deterministic and sorts events by (rank, op)", "[traces]") {
  Trace trace = sample_trace();
  Trace shuffled = trace;
  std::swap(shuffled.events[0], shuffled.events[2]);
  std::swap(shuffled.events[0], shuffled.events[1]);
  REQUIRE(shuffled.events != trace.events);
  CHECK(paratwin::write_chrome_trace(shuffled) == paratwin::write_chrome_trace(trace));
  const Trace back = paratwin::read_chrome_trace(paratwin::write_chrome_trace(shuffled), "memory");
  CHECK(back.events == trace.events);
}

TEST_CASE("trace JSON carries Chrome fields in microseconds", "[traces]") {
  const Trace trace = sample_trace();
  const auto json = nlohmann::json::parse(paratwin::write_chrome_trace(trace));
  CHECK(json.at("displayTimeUnit") == "ns");
  int complete = 0;
  for (const auto& event : json.at("traceEvents")) {
    if (event.at("ph") != "X") continue;
    ++complete;
    if (event.at("args").at("op") == 1 && event.at("args").at("rank") == 0) {
      CHECK(event.at("tid") == 1);  // 2·rank + comm
      CHECK(event.at("ts").get<double>() == Approx(trace.events[1].start_s * 1e6));
      CHECK(event.at("dur").get<double>() == Approx((trace.events[1].end_s - trace.events[1].start_s) * 1e6));
    }
  }
  CHECK(complete == 3);
}

TEST_CASE("trace reader names the event and the missing field", "[traces]") {
  auto json = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  for (auto& event : json.at("traceEvents")) {
    if (event.at("ph") == "X" && event.at("args").at("op") == 1) event.at("args").erase("end_s");
  }
  try {
    (void)paratwin::read_chrome_trace(json.dump(), "broken.json");
    FAIL("no error thrown");
  } catch (const paratwin::Error& error) {
    const std::string message = error.what();
    CHECK_THAT(message, Catch::Contains("broken.json"));
    CHECK_THAT(message, Catch::Contains("L0.attn.tp_all_reduce"));
    CHECK_THAT(message, Catch::Contains("end_s"));
  }
}

TEST_CASE("trace reader rejects missing metadata and wrong types", "[traces]") {
  auto json = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  auto no_backend = json;
  no_backend.at("metadata").erase("backend");
  CHECK_THROWS_WITH(paratwin::read_chrome_trace(no_backend.dump(), "m.json"), Catch::Contains("backend"));
  auto bad_rank = json;
  for (auto& event : bad_rank.at("traceEvents")) {
    if (event.at("ph") == "X") event.at("args")["rank"] = "zero";
  }
  CHECK_THROWS_AS(paratwin::read_chrome_trace(bad_rank.dump(), "r.json"), paratwin::Error);
  CHECK_THROWS_AS(paratwin::read_chrome_trace("{not json", "x.json"), paratwin::Error);
}

TEST_CASE("trace reader ignores extra fields and foreign events", "[traces]") {
  auto json = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  json["otherData"] = {{"tool", "nsys"}};
  json.at("metadata")["unknown_key"] = 42;
  for (auto& event : json.at("traceEvents")) {
    if (event.at("ph") == "X") event.at("args")["sm_count"] = 132;
  }
  json.at("traceEvents").push_back({{"ph", "i"}, {"name", "marker"}, {"ts", 5}});
  const Trace back = paratwin::read_chrome_trace(json.dump(), "extra.json");
  CHECK(back == sample_trace());
}

TEST_CASE("trace file write is atomic and readable", "[traces]") {
  const auto dir = std::filesystem::temp_directory_path() / "paratwin_trace_io_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "t.json").string();
  const Trace trace = sample_trace();
  paratwin::write_chrome_trace_file(trace, path);
  CHECK(paratwin::read_chrome_trace_file(path) == trace);
  // Only the final file remains (no temporary left behind).
  int files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 1);
  // A path in a missing directory fails with a message naming it, and leaves nothing behind.
  const std::string bad = (dir / "missing" / "t.json").string();
  CHECK_THROWS_WITH(paratwin::write_chrome_trace_file(trace, bad), Catch::Contains(bad));
  CHECK_THROWS_AS(paratwin::read_chrome_trace_file((dir / "none.json").string()), paratwin::Error);
  std::filesystem::remove_all(dir);
}
