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

TEST_CASE("trace reader round-trips the optional compute fields and omits them when unset", "[traces]") {
  Trace trace = sample_trace();
  trace.events[0].size = 4096;
  trace.events[0].dtype = "fp8";
  trace.events[0].causal = true;
  const std::string text = paratwin::write_chrome_trace(trace);
  CHECK(paratwin::read_chrome_trace(text, "memory") == trace);
  const auto json = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  for (const auto& event : json.at("traceEvents")) {
    if (event.at("ph") != "X") continue;
    CHECK_FALSE(event.at("args").contains("size"));
    CHECK_FALSE(event.at("args").contains("dtype"));
    CHECK_FALSE(event.at("args").contains("causal"));
  }
  auto bad = nlohmann::json::parse(text);
  for (auto& event : bad.at("traceEvents")) {
    if (event.at("ph") == "X" && event.at("args").contains("size")) event.at("args")["causal"] = "yes";
  }
  CHECK_THROWS_WITH(paratwin::read_chrome_trace(bad.dump(), "c.json"), Catch::Contains("causal"));
}

TEST_CASE("trace reader loads a profiler export without paratwin args as a foreign trace", "[traces]") {
  // The shape of a PyTorch profiler (Kineto) export: no "metadata", string thread ids, extra top-level keys.
  const auto json = nlohmann::json::parse(R"({
    "schemaVersion": 1, "deviceProperties": [],
    "traceEvents": [
      {"ph": "X", "cat": "kernel", "name": "sm90_gemm", "pid": 1, "tid": "stream 7", "ts": 1000.0, "dur": 30.0,
       "args": {"device": 1, "grid": [1, 2, 3]}},
      {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_AllGather_RING_LL", "pid": 0, "tid": "stream 9",
       "ts": 1010.5, "dur": 12.5},
      {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 0, "tid": 42, "ts": 1000.0, "dur": 5.0},
      {"ph": "i", "name": "marker", "ts": 3},
      {"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "rank 0"}}
    ]})");
  const Trace trace = paratwin::read_chrome_trace(json.dump(), "kineto.json");
  CHECK(trace.foreign);
  CHECK(trace.meta.backend == "foreign");
  REQUIRE(trace.events.size() == 3);
  // Per rank (pid), ops numbered by start; times from the first event, in seconds.
  CHECK(trace.events[0].rank == 0);
  CHECK(trace.events[0].name == "aten::mm");
  CHECK(trace.events[0].op == 0);
  CHECK(trace.events[0].start_s == Approx(0.0).margin(1e-15));
  CHECK(trace.events[1].name == "ncclDevKernel_AllGather_RING_LL");
  CHECK(trace.events[1].stream == "comm");
  CHECK(trace.events[1].op == 1);
  CHECK(trace.events[1].start_s == Approx(10.5e-6));
  CHECK(trace.events[1].end_s == Approx(23e-6));
  CHECK(trace.events[2].rank == 1);
  CHECK(trace.events[2].stream == "compute");
  CHECK(trace.events[2].kind == "kernel");
  // A bare event array (Chrome's JSON array format) reads too.
  CHECK(paratwin::read_chrome_trace(json.at("traceEvents").dump(), "array.json").events.size() == 3);
}

TEST_CASE("foreign trace events must still have the Chrome fields", "[traces]") {
  const std::string no_dur = R"({"traceEvents": [{"ph": "X", "name": "k", "pid": 0, "tid": 0, "ts": 1}]})";
  CHECK_THROWS_WITH(paratwin::read_chrome_trace(no_dur, "f.json"),
                    Catch::Contains("f.json") && Catch::Contains("traceEvents[0]") && Catch::Contains("'dur'"));
  const std::string nothing = R"({"traceEvents": [{"ph": "M", "name": "process_name", "pid": 0}]})";
  CHECK_THROWS_WITH(paratwin::read_chrome_trace(nothing, "e.json"), Catch::Contains("no complete"));
}

TEST_CASE("a paratwin trace missing an event field is an error, never a foreign trace", "[traces]") {
  auto json = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  // Without metadata, paratwin's "op" arg still marks the trace as paratwin's, so the reader is strict.
  json.erase("metadata");
  CHECK_THROWS_WITH(paratwin::read_chrome_trace(json.dump(), "nometa.json"), Catch::Contains("metadata"));
  auto missing_flops = nlohmann::json::parse(paratwin::write_chrome_trace(sample_trace()));
  for (auto& event : missing_flops.at("traceEvents")) {
    if (event.at("ph") == "X" && event.at("args").at("rank") == 9) event.at("args").erase("flops");
  }
  CHECK_THROWS_WITH(
      paratwin::read_chrome_trace(missing_flops.dump(), "p.json"),
      Catch::Contains("traceEvents[") && Catch::Contains("L0.attn.qkv_gemm") && Catch::Contains("'flops'"));
}
