// Chrome trace JSON writer and reader for traces/trace.hpp.
//
// Determinism: nlohmann::json keeps object keys sorted and prints doubles with the shortest text that round-trips,
// and events are written in (rank, op) order, so equal traces give byte-identical files.

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "topology/error.hpp"
#include "traces/trace.hpp"

namespace paratwin {
namespace {

using Json = nlohmann::json;

int stream_index(const std::string& stream) {
  return stream == "comm" ? 1 : 0;
}

Json meta_to_json(const TraceMeta& meta) {
  Json out = Json::object();
  out["backend"] = meta.backend;
  out["schedule_hash"] = meta.schedule_hash;
  out["model"] = meta.model;
  out["layout"] = meta.layout;
  out["cluster"] = meta.cluster;
  out["calibration"] = meta.calibration;
  out["versions"] = Json::object();
  for (const auto& [key, value] : meta.versions) out["versions"][key] = value;
  out["extra"] = Json::object();
  for (const auto& [key, value] : meta.extra) out["extra"][key] = value;
  return out;
}

Json event_to_json(const Event& event) {
  Json args = Json::object();
  args["rank"] = event.rank;
  args["node"] = event.node;
  args["op"] = event.op;
  args["name"] = event.name;
  args["stream"] = event.stream;
  args["layer"] = event.layer;
  args["kind"] = event.kind;
  args["group"] = event.group;
  args["group_size"] = event.group_size;
  args["start_s"] = event.start_s;
  args["end_s"] = event.end_s;
  args["bytes"] = event.bytes;
  args["flops"] = event.flops;
  // Optional fields are written only when recorded, so traces without them keep their exact text.
  if (event.size > 0) args["size"] = event.size;
  if (!event.dtype.empty()) args["dtype"] = event.dtype;
  if (event.causal) args["causal"] = true;
  Json out = Json::object();
  out["ph"] = "X";
  out["name"] = event.name;
  out["cat"] = event.kind;
  out["pid"] = event.node;
  out["tid"] = 2 * event.rank + stream_index(event.stream);
  out["ts"] = event.start_s * 1e6;
  out["dur"] = (event.end_s - event.start_s) * 1e6;
  out["args"] = std::move(args);
  return out;
}

// Label of an event in error messages: its index and, when readable, its name.
std::string event_label(const Json& event, std::size_t index) {
  std::string label = fmt::format("traceEvents[{}]", index);
  if (event.is_object()) {
    const auto args = event.find("args");
    if (args != event.end() && args->is_object()) {
      const auto name = args->find("name");
      if (name != args->end() && name->is_string()) label += fmt::format(" ('{}')", name->get<std::string>());
    }
  }
  return label;
}

const Json& require(const Json& object, const char* key, const std::string& where, const std::string& source) {
  const auto it = object.find(key);
  if (it == object.end()) fail("trace {}: {} has no field '{}'", source, where, key);
  return *it;
}

std::string require_string(const Json& object, const char* key, const std::string& where, const std::string& source) {
  const Json& value = require(object, key, where, source);
  if (!value.is_string()) fail("trace {}: {} field '{}' must be a string, got {}", source, where, key, value.dump());
  return value.get<std::string>();
}

std::int64_t require_integer(const Json& object, const char* key, const std::string& where, const std::string& source) {
  const Json& value = require(object, key, where, source);
  if (!value.is_number_integer()) {
    fail("trace {}: {} field '{}' must be an integer, got {}", source, where, key, value.dump());
  }
  return value.get<std::int64_t>();
}

int require_int(const Json& object, const char* key, const std::string& where, const std::string& source) {
  const std::int64_t value = require_integer(object, key, where, source);
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    fail("trace {}: {} field '{}' = {} does not fit a 32-bit integer", source, where, key, value);
  }
  return static_cast<int>(value);
}

double require_number(const Json& object, const char* key, const std::string& where, const std::string& source) {
  const Json& value = require(object, key, where, source);
  if (!value.is_number()) fail("trace {}: {} field '{}' must be a number, got {}", source, where, key, value.dump());
  return value.get<double>();
}

std::map<std::string, std::string> optional_string_map(const Json& object, const char* key, const std::string& source) {
  std::map<std::string, std::string> out;
  const auto it = object.find(key);
  if (it == object.end()) return out;
  if (!it->is_object()) fail("trace {}: metadata field '{}' must be an object of strings", source, key);
  for (const auto& [name, value] : it->items()) {
    if (!value.is_string()) fail("trace {}: metadata.{}.{} must be a string, got {}", source, key, name, value.dump());
    out[name] = value.get<std::string>();
  }
  return out;
}

// A trace is paratwin's when anything in it says so: the metadata names a backend or a schedule hash, or an "X"
// event carries paratwin's "op" arg. Such a trace is then read strictly, so a paratwin trace that lost a field is an
// error naming it, never silently demoted to a foreign trace.
bool is_paratwin_trace(const Json& root, const Json& events) {
  const auto meta = root.find("metadata");
  if (meta != root.end() && meta->is_object() && (meta->contains("backend") || meta->contains("schedule_hash"))) {
    return true;
  }
  for (const Json& item : events) {
    if (!item.is_object()) continue;
    const auto args = item.find("args");
    if (args != item.end() && args->is_object() && args->contains("op")) return true;
  }
  return false;
}

bool is_complete_event(const Json& item, const std::string& where, const std::string& source) {
  if (!item.is_object()) fail("trace {}: {} is not an object", source, where);
  const auto ph = item.find("ph");
  if (ph == item.end()) fail("trace {}: {} has no field 'ph'", source, where);
  return ph->is_string() && ph->get<std::string>() == "X";  // metadata ("M"), counters, instants... are skipped
}

Trace read_paratwin_events(const Json& root, const Json& events, const std::string& source) {
  const Json& meta_json = require(root, "metadata", "the top level", source);
  if (!meta_json.is_object()) fail("trace {}: 'metadata' must be an object", source);

  Trace trace;
  const std::string meta_where = "metadata";
  trace.meta.backend = require_string(meta_json, "backend", meta_where, source);
  trace.meta.schedule_hash = require_string(meta_json, "schedule_hash", meta_where, source);
  trace.meta.model = require_string(meta_json, "model", meta_where, source);
  trace.meta.layout = require_string(meta_json, "layout", meta_where, source);
  trace.meta.cluster = require_string(meta_json, "cluster", meta_where, source);
  trace.meta.calibration = require_string(meta_json, "calibration", meta_where, source);
  trace.meta.versions = optional_string_map(meta_json, "versions", source);
  trace.meta.extra = optional_string_map(meta_json, "extra", source);

  for (std::size_t i = 0; i < events.size(); ++i) {
    const Json& item = events[i];
    const std::string where = event_label(item, i);
    if (!is_complete_event(item, where, source)) continue;
    const Json& args = require(item, "args", where, source);
    if (!args.is_object()) fail("trace {}: {} field 'args' must be an object", source, where);
    const std::string args_where = where + " args";
    Event event;
    event.rank = require_int(args, "rank", args_where, source);
    event.node = require_int(args, "node", args_where, source);
    event.op = require_int(args, "op", args_where, source);
    event.name = require_string(args, "name", args_where, source);
    event.stream = require_string(args, "stream", args_where, source);
    if (event.stream != "compute" && event.stream != "comm") {
      fail("trace {}: {} field 'stream' must be \"compute\" or \"comm\", got \"{}\"", source, args_where, event.stream);
    }
    event.layer = require_int(args, "layer", args_where, source);
    event.kind = require_string(args, "kind", args_where, source);
    event.group = require_string(args, "group", args_where, source);
    event.group_size = require_int(args, "group_size", args_where, source);
    event.start_s = require_number(args, "start_s", args_where, source);
    event.end_s = require_number(args, "end_s", args_where, source);
    event.bytes = require_integer(args, "bytes", args_where, source);
    event.flops = require_number(args, "flops", args_where, source);
    if (args.contains("size")) event.size = require_number(args, "size", args_where, source);
    if (args.contains("dtype")) event.dtype = require_string(args, "dtype", args_where, source);
    if (args.contains("causal")) {
      const Json& causal = args["causal"];
      if (!causal.is_boolean()) fail("trace {}: {} field 'causal' must be true or false", source, args_where);
      event.causal = causal.get<bool>();
    }
    if (event.end_s < event.start_s) {
      fail("trace {}: {} ends before it starts (start_s {}, end_s {})", source, args_where, event.start_s, event.end_s);
    }
    trace.events.push_back(std::move(event));
  }
  return trace;
}

// pid/tid are integers in Chrome's format but strings in some exports; strings get stable indices.
int id_of(const Json& value, std::map<std::string, int>& names, const std::string& where, const char* key,
          const std::string& source) {
  if (value.is_number_integer()) {
    const auto id = value.get<std::int64_t>();
    if (id < std::numeric_limits<int>::min() || id > std::numeric_limits<int>::max()) {
      fail("trace {}: {} field '{}' = {} does not fit a 32-bit integer", source, where, key, id);
    }
    return static_cast<int>(id);
  }
  if (value.is_string())
    return names.try_emplace(value.get<std::string>(), static_cast<int>(names.size())).first->second;
  fail("trace {}: {} field '{}' must be an integer or a string, got {}", source, where, key, value.dump());
}

// A foreign trace keeps what every Chrome "X" event has: name, cat, pid, tid, ts and dur (microseconds). The pid is
// the rank (one process per GPU in a PyTorch distributed run), the thread becomes the stream ("comm" when its
// category or name says NCCL, else "compute"), and ops are numbered per rank by start time.
Trace read_foreign_events(const Json& events, const std::string& source) {
  Trace trace;
  trace.foreign = true;
  trace.meta.backend = "foreign";
  std::map<std::string, int> pid_names;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Json& item = events[i];
    const std::string where = fmt::format("traceEvents[{}]", i);
    if (!is_complete_event(item, where, source)) continue;
    Event event;
    event.name = require_string(item, "name", where, source);
    event.rank = id_of(require(item, "pid", where, source), pid_names, where, "pid", source);
    const auto cat = item.find("cat");
    event.kind = cat != item.end() && cat->is_string() ? cat->get<std::string>() : "";
    const auto lower_has_nccl = [](std::string text) {
      std::transform(text.begin(), text.end(), text.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      return text.find("nccl") != std::string::npos;
    };
    event.stream = lower_has_nccl(event.name) || lower_has_nccl(event.kind) ? "comm" : "compute";
    const double ts_us = require_number(item, "ts", where, source);
    const double dur_us = require_number(item, "dur", where, source);
    if (dur_us < 0) fail("trace {}: {} has a negative 'dur' ({})", source, where, dur_us);
    event.start_s = ts_us * 1e-6;
    event.end_s = (ts_us + dur_us) * 1e-6;
    trace.events.push_back(std::move(event));
  }
  if (trace.events.empty()) fail("trace {}: no complete (\"ph\": \"X\") events: nothing to show", source);
  // Times from the first event, ops numbered per rank by start.
  double origin_s = std::numeric_limits<double>::infinity();
  for (const Event& event : trace.events) origin_s = std::min(origin_s, event.start_s);
  std::stable_sort(trace.events.begin(), trace.events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.rank, a.start_s) < std::tie(b.rank, b.start_s);
  });
  std::map<int, int> next_op;
  for (Event& event : trace.events) {
    event.start_s -= origin_s;
    event.end_s -= origin_s;
    event.op = next_op[event.rank]++;
  }
  return trace;
}

}  // namespace

std::string write_chrome_trace(const Trace& trace) {
  std::vector<const Event*> events;
  events.reserve(trace.events.size());
  for (const Event& event : trace.events) events.push_back(&event);
  std::stable_sort(events.begin(), events.end(),
                   [](const Event* a, const Event* b) { return std::tie(a->rank, a->op) < std::tie(b->rank, b->op); });

  Json trace_events = Json::array();
  // Names of processes (nodes) and threads (rank × stream), in ascending order.
  std::set<int> nodes;
  std::set<std::pair<int, int>> threads;  // (rank, node)
  for (const Event* event : events) {
    nodes.insert(event->node);
    threads.insert({event->rank, event->node});
  }
  for (const int node : nodes) {
    Json name = Json::object();
    name["ph"] = "M";
    name["name"] = "process_name";
    name["pid"] = node;
    name["tid"] = 0;
    name["args"] = Json{{"name", fmt::format("node {}", node)}};
    trace_events.push_back(std::move(name));
  }
  for (const auto& [rank, node] : threads) {
    for (int stream = 0; stream < 2; ++stream) {
      Json name = Json::object();
      name["ph"] = "M";
      name["name"] = "thread_name";
      name["pid"] = node;
      name["tid"] = 2 * rank + stream;
      name["args"] = Json{{"name", fmt::format("rank {} {}", rank, stream == 0 ? "compute" : "comm")}};
      trace_events.push_back(std::move(name));
    }
  }
  for (const Event* event : events) trace_events.push_back(event_to_json(*event));

  Json root = Json::object();
  root["traceEvents"] = std::move(trace_events);
  root["displayTimeUnit"] = "ns";
  root["metadata"] = meta_to_json(trace.meta);
  std::string text = root.dump(1);
  text.push_back('\n');
  return text;
}

void write_chrome_trace_file(const Trace& trace, const std::string& path) {
  const std::string text = write_chrome_trace(trace);
  const std::string temporary = fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid()));
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write trace file {}: cannot create {} ({})", path, temporary, std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      std::remove(temporary.c_str());
      fail("cannot write trace file {}: writing {} failed", path, temporary);
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(temporary.c_str());
    fail("cannot write trace file {}: rename from {} failed ({})", path, temporary, std::strerror(error));
  }
}

Trace read_chrome_trace(const std::string& json_text, const std::string& source) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& error) {
    fail("trace {}: not valid JSON: {}", source, error.what());
  }
  // Chrome's "JSON array format" (a bare list of events) is what some tools write.
  if (root.is_array()) root = Json{{"traceEvents", std::move(root)}};
  if (!root.is_object()) fail("trace {}: the top level must be an object with 'traceEvents'", source);
  const Json& events = require(root, "traceEvents", "the top level", source);
  if (!events.is_array()) fail("trace {}: 'traceEvents' must be an array", source);
  return is_paratwin_trace(root, events) ? read_paratwin_events(root, events, source)
                                         : read_foreign_events(events, source);
}

Trace read_chrome_trace_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read trace file {}: {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("cannot read trace file {}: read error", path);
  return read_chrome_trace(text.str(), path);
}

}  // namespace paratwin
