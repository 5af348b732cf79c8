#include "planner/results_file.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <nlohmann/json.hpp>

#include "models/schedule_strings.hpp"
#include "topology/error.hpp"

namespace paratwin::plan {
namespace {

constexpr const char* kFormat = "paratwin-plan-results/1";

std::string fnv1a_hex(const std::string& text) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", hash);
}

std::string_view routing_name(RoutingLoad load) {
  switch (load) {
    case RoutingLoad::kUniform:
      return "uniform";
    case RoutingLoad::kZipf:
      return "zipf";
    case RoutingLoad::kPerToken:
      return "per-token";
  }
  return "?";
}

nlohmann::json inputs(const PlanRequest& r) {
  Cluster node_type = r.cluster;
  node_type.nodes = 1;
  const ScheduleOptions& w = r.workload;
  return {{"model", r.model.name},
          {"model-architecture", r.model.architecture_name},
          {"model-layers", r.model.num_layers},
          {"weight-dtype", to_string(r.model.weight_dtype)},
          {"cluster", r.cluster.name},
          {"cluster-spec-fnv1a", fnv1a_hex(cluster_to_yaml(node_type))},
          {"nodes", r.node_counts},
          {"phase", to_string(w.phase)},
          {"prompt-len", w.prompt_tokens},
          {"batch", w.batch},
          {"layers", w.layers},
          {"micro-batches", w.micro_batches},
          {"routing", routing_name(w.routing.load)},
          {"zipf-exponent", w.routing.zipf_exponent},
          {"seed", w.routing.seed},
          {"objective", to_string(r.objective)},
          {"sglang-version", describe(r.sglang_version)},
          {"mem-fraction-static", r.mem_fraction_static},
          {"kv-cache-dtype", to_string(r.kv_dtype)},
          {"fast", r.fast},
          {"prune", r.prune},
          {"top", r.top},
          {"wave-size", r.wave_size}};
}

nlohmann::json outcome_json(const Outcome& o) {
  nlohmann::json j = {{"status", to_string(o.status)},    {"lower_bound_s", o.lower_bound_s},
                      {"latency_s", o.latency_s},         {"exposed_comm_s", o.exposed_comm_s},
                      {"attention_s", o.attention_s},     {"compute_utilization", o.compute_utilization},
                      {"layers_reused", o.layers_reused}, {"wall_s", o.wall_s}};
  if (!o.error.empty()) j["error"] = o.error;
  return j;
}

Outcome outcome_from(const nlohmann::json& j) {
  Outcome o;
  o.status = parse_outcome_status(j.at("status").get<std::string>());
  o.lower_bound_s = j.at("lower_bound_s").get<double>();
  o.latency_s = j.at("latency_s").get<double>();
  o.exposed_comm_s = j.at("exposed_comm_s").get<double>();
  o.attention_s = j.at("attention_s").get<double>();
  o.compute_utilization = j.at("compute_utilization").get<double>();
  o.layers_reused = j.at("layers_reused").get<int>();
  o.wall_s = j.at("wall_s").get<double>();
  if (j.contains("error")) o.error = j.at("error").get<std::string>();
  return o;
}

}  // namespace

std::string plan_inputs_json(const PlanRequest& request) {
  return inputs(request).dump();
}

std::string results_file_text(const PlanRequest& request, const std::vector<FinishedKey>& finished, bool complete) {
  nlohmann::json layouts = nlohmann::json::array();
  for (const auto& f : finished) {
    nlohmann::json entry = outcome_json(f.outcome);
    entry["key"] = f.key;
    entry["layouts"] = f.layout_ids;
    layouts.push_back(std::move(entry));
  }
  const nlohmann::json doc = {
      {"format", kFormat}, {"inputs", inputs(request)}, {"complete", complete}, {"layouts", std::move(layouts)}};
  return doc.dump(1) + "\n";
}

std::map<std::string, Outcome> read_results_file(const std::string& text, const PlanRequest& request,
                                                 const std::string& source) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("--resume: '{}' is not a plan results file (not JSON: {})", source, e.what());
  }
  if (!doc.is_object() || !doc.contains("format") || doc["format"] != kFormat) {
    fail("--resume: '{}' is not a plan results file (its \"format\" is not \"{}\")", source, kFormat);
  }
  const nlohmann::json expected = inputs(request);
  const nlohmann::json& stored = doc.contains("inputs") ? doc["inputs"] : nlohmann::json();
  for (const auto& [key, value] : expected.items()) {
    if (!stored.is_object() || !stored.contains(key)) {
      fail("--resume: '{}' was written for other inputs: it has no '{}' (this run: {})", source, key, value.dump());
    }
    if (stored[key] != value) {
      fail(
          "--resume: '{}' was written for other inputs: {} {} there, {} in this run; rerun with the same inputs or "
          "write to a new --out file",
          source, key, stored[key].dump(), value.dump());
    }
  }
  std::map<std::string, Outcome> outcomes;
  try {
    for (const auto& entry : doc.at("layouts")) outcomes[entry.at("key").get<std::string>()] = outcome_from(entry);
  } catch (const nlohmann::json::exception& e) {
    fail("--resume: '{}' has a malformed \"layouts\" entry ({})", source, e.what());
  }
  return outcomes;
}

std::string encode_outcome(const Outcome& outcome) {
  return outcome_json(outcome).dump();
}

Outcome decode_outcome(const std::string& text) {
  try {
    return outcome_from(nlohmann::json::parse(text));
  } catch (const nlohmann::json::exception& e) {
    fail("plan: malformed layout result '{}' ({})", text.substr(0, 200), e.what());
  }
}

}  // namespace paratwin::plan
