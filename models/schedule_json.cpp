#include "models/schedule_json.hpp"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "models/schedule_strings.hpp"
#include "topology/error.hpp"
#include "topology/parallel_config.hpp"

namespace paratwin {
namespace {

using nlohmann::json;

constexpr int kFormatVersion = 1;

// The integer fields of a ComputeShape by JSON key, with the value a key left out stands for: one table for both
// directions, so writer and reader cannot drift apart.
struct ShapeField {
  const char* key;
  std::int64_t ComputeShape::*member;
  std::int64_t neutral;
};
constexpr std::array<ShapeField, 16> kShapeFields = {{{"m", &ComputeShape::m, 0},
                                                      {"n", &ComputeShape::n, 0},
                                                      {"k", &ComputeShape::k, 0},
                                                      {"q_tokens", &ComputeShape::q_tokens, 0},
                                                      {"kv_tokens", &ComputeShape::kv_tokens, 0},
                                                      {"q_start", &ComputeShape::q_start, 0},
                                                      {"q_stride", &ComputeShape::q_stride, 1},
                                                      {"kv_start", &ComputeShape::kv_start, 0},
                                                      {"kv_stride", &ComputeShape::kv_stride, 1},
                                                      {"batch", &ComputeShape::batch, 1},
                                                      {"heads", &ComputeShape::heads, 0},
                                                      {"kv_heads", &ComputeShape::kv_heads, 0},
                                                      {"head_dim_qk", &ComputeShape::head_dim_qk, 0},
                                                      {"head_dim_v", &ComputeShape::head_dim_v, 0},
                                                      {"topk", &ComputeShape::topk, 0},
                                                      {"out_rows", &ComputeShape::out_rows, 0}}};

json shape_to_json(const ComputeShape& s) {
  json j = json::object();
  for (const auto& f : kShapeFields) {
    if (s.*f.member != f.neutral) j[f.key] = s.*f.member;
  }
  if (!s.group_rows.empty()) j["group_rows"] = s.group_rows;
  if (s.causal) j["causal"] = true;
  if (s.kv_shared) j["kv_shared"] = true;
  return j;
}

ComputeShape shape_from_json(const json& j) {
  ComputeShape s;
  for (const auto& f : kShapeFields) s.*f.member = j.value(f.key, f.neutral);
  if (j.contains("group_rows")) s.group_rows = j.at("group_rows").get<std::vector<std::int64_t>>();
  s.causal = j.value("causal", false);
  s.kv_shared = j.value("kv_shared", false);
  return s;
}

json op_to_json(const Op& op) {
  json j = {{"i", op.index},
            {"name", op.name},
            {"stream", to_string(op.stream)},
            {"layer", op.layer},
            {"phase", to_string(op.phase)},
            {"mb", op.micro_batch},
            {"deps", op.deps}};
  if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
    j["compute"] = {{"kind", to_string(c->kind)},
                    {"dtype", to_string(c->dtype)},
                    {"flops", c->flops},
                    {"bytes", c->bytes},
                    {"shape", shape_to_json(c->shape)}};
  } else if (const auto* k = std::get_if<CollectiveOp>(&op.body)) {
    json cj = {{"kind", to_string(k->kind)},  {"family", family_key(k->family)}, {"group", k->group_index},
               {"group_size", k->group_size}, {"dtype", to_string(k->dtype)},    {"bytes", k->bytes},
               {"instance", k->instance}};
    if (!k->send_bytes.empty()) cj["send_bytes"] = k->send_bytes;
    if (!k->recv_bytes.empty()) cj["recv_bytes"] = k->recv_bytes;
    if (k->kind == CollectiveKind::kBroadcast) cj["root"] = k->root;
    j["collective"] = std::move(cj);
  } else {
    const auto& p = std::get<P2POp>(op.body);
    j["p2p"] = {{"dir", p.is_send ? "send" : "recv"},
                {"peer", p.peer},
                {"bytes", p.bytes},
                {"dtype", to_string(p.dtype)},
                {"match", p.match}};
    if (p.group >= 0) j["p2p"]["group"] = p.group;
  }
  return j;
}

Op op_from_json(const json& j) {
  Op op;
  op.index = j.at("i").get<int>();
  op.name = j.at("name").get<std::string>();
  op.stream = parse_stream(j.at("stream").get<std::string>());
  op.layer = j.at("layer").get<int>();
  op.phase = parse_phase(j.at("phase").get<std::string>());
  op.micro_batch = j.at("mb").get<int>();
  op.deps = j.at("deps").get<std::vector<int>>();
  if (j.contains("compute")) {
    const auto& c = j.at("compute");
    ComputeOp body;
    body.kind = parse_compute_kind(c.at("kind").get<std::string>());
    body.dtype = parse_dtype(c.at("dtype").get<std::string>());
    body.flops = c.at("flops").get<double>();
    body.bytes = c.at("bytes").get<double>();
    body.shape = shape_from_json(c.at("shape"));
    op.body = std::move(body);
  } else if (j.contains("collective")) {
    const auto& c = j.at("collective");
    CollectiveOp body;
    body.kind = parse_collective_kind(c.at("kind").get<std::string>());
    body.family = parse_family(c.at("family").get<std::string>());
    body.group_index = c.at("group").get<int>();
    body.group_size = c.at("group_size").get<int>();
    body.dtype = parse_dtype(c.at("dtype").get<std::string>());
    body.bytes = c.at("bytes").get<std::int64_t>();
    body.instance = c.at("instance").get<std::int64_t>();
    if (c.contains("send_bytes")) body.send_bytes = c.at("send_bytes").get<std::vector<std::int64_t>>();
    if (c.contains("recv_bytes")) body.recv_bytes = c.at("recv_bytes").get<std::vector<std::int64_t>>();
    body.root = c.value("root", 0);
    op.body = std::move(body);
  } else {
    const auto& p = j.at("p2p");
    P2POp body;
    const auto dir = p.at("dir").get<std::string>();
    if (dir != "send" && dir != "recv") fail("p2p dir '{}' must be send or recv", dir);
    body.is_send = dir == "send";
    body.peer = p.at("peer").get<int>();
    body.bytes = p.at("bytes").get<std::int64_t>();
    body.dtype = parse_dtype(p.at("dtype").get<std::string>());
    body.match = p.at("match").get<std::int64_t>();
    body.group = p.value("group", std::int64_t{-1});
    op.body = body;
  }
  return op;
}

json config_to_json(const ParallelConfig& c) {
  json j = json::object();
  for_each_layout_argument(c, [&](const char* key, const auto& value) { j[key] = value; });
  j["moe_dp_rule"] = c.moe_dp_rule == MoeDpRule::kMerged ? "merged" : "attn-cp-alias";
  if (c.world_size) j["world_size"] = *c.world_size;
  return j;
}

ParallelConfig config_from_json(const json& j) {
  ParallelConfig c;
  for_each_layout_argument(c, [&](const char* key, auto& field) { j.at(key).get_to(field); });
  const auto rule = j.at("moe_dp_rule").get<std::string>();
  if (rule != "merged" && rule != "attn-cp-alias") fail("moe_dp_rule '{}' must be merged or attn-cp-alias", rule);
  c.moe_dp_rule = rule == "merged" ? MoeDpRule::kMerged : MoeDpRule::kAliasAttnCpWhenLarger;
  if (j.contains("world_size")) c.world_size = j.at("world_size").get<int>();
  return c;
}

json meta_to_json(const ScheduleMeta& m) {
  json j = {{"model", m.model},
            {"config", config_to_json(m.config)},
            {"phase", to_string(m.phase)},
            {"prompt_tokens", m.prompt_tokens},
            {"batch", m.batch},
            {"cp_algorithm", to_string(m.cp_algorithm)},
            {"cp_split", to_string(m.cp_split)},
            {"moe_mode", to_string(m.moe_mode)},
            {"layers", m.layers},
            {"micro_batches", m.micro_batches},
            {"weight_dtype", to_string(m.weight_dtype)}};
  if (m.per_token_routing_seed) j["per_token_routing_seed"] = *m.per_token_routing_seed;
  return j;
}

ScheduleMeta meta_from_json(const json& j) {
  ScheduleMeta m;
  m.model = j.at("model").get<std::string>();
  m.config = config_from_json(j.at("config"));
  m.phase = parse_phase(j.at("phase").get<std::string>());
  m.prompt_tokens = j.at("prompt_tokens").get<std::int64_t>();
  m.batch = j.at("batch").get<int>();
  m.cp_algorithm = parse_cp_algorithm(j.at("cp_algorithm").get<std::string>());
  m.cp_split = parse_cp_split(j.at("cp_split").get<std::string>());
  m.moe_mode = parse_moe_mode(j.at("moe_mode").get<std::string>());
  m.layers = j.at("layers").get<int>();
  m.micro_batches = j.at("micro_batches").get<int>();
  m.weight_dtype = parse_dtype(j.at("weight_dtype").get<std::string>());
  if (j.contains("per_token_routing_seed"))
    m.per_token_routing_seed = j.at("per_token_routing_seed").get<std::uint64_t>();
  return m;
}

json schedule_document(const Schedule& schedule) {
  json ranks = json::array();
  for (const auto& ops : schedule.ranks) {
    json list = json::array();
    for (const auto& op : ops) list.push_back(op_to_json(op));
    ranks.push_back(std::move(list));
  }
  return {{"format", "paratwin-schedule"},
          {"version", kFormatVersion},
          {"meta", meta_to_json(schedule.meta)},
          {"ranks", std::move(ranks)}};
}

}  // namespace

std::string schedule_to_json(const Schedule& schedule) {
  return schedule_document(schedule).dump() + "\n";
}

Schedule schedule_from_json(std::string_view json_text, std::string_view source) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", source, e.what());
  }
  std::string where = "the document";
  try {
    if (doc.value("format", "") != "paratwin-schedule") {
      fail("{}: not a paratwin schedule (its \"format\" must be \"paratwin-schedule\")", source);
    }
    if (doc.at("version").get<int>() != kFormatVersion) {
      fail("{}: schedule format version {} is not supported (this paratwin reads version {})", source,
           doc.at("version").get<int>(), kFormatVersion);
    }
    Schedule schedule;
    where = "meta";
    schedule.meta = meta_from_json(doc.at("meta"));
    const auto& ranks = doc.at("ranks");
    for (std::size_t r = 0; r < ranks.size(); ++r) {
      std::vector<Op> ops;
      const auto& list = ranks[r];
      ops.reserve(list.size());
      for (std::size_t i = 0; i < list.size(); ++i) {
        where = fmt::format("rank {} op {}", r, i);
        ops.push_back(op_from_json(list[i]));
        if (ops.back().index != static_cast<int>(i)) fail("its \"i\" is {}, expected {}", ops.back().index, i);
      }
      schedule.ranks.push_back(std::move(ops));
    }
    return schedule;
  } catch (const json::exception& e) {
    fail("{}: {}: {}", source, where, e.what());
  } catch (const Error& e) {
    if (std::string_view(e.what()).find(source) == 0) throw;
    fail("{}: {}: {}", source, where, e.what());
  }
}

namespace {

// FNV-1a over the fields themselves: as strict as hashing the canonical JSON, without building it (the JSON of a
// 1024-rank schedule takes seconds to write).
class Fnv1a {
 public:
  void add_bytes(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
      hash_ ^= bytes[i];
      hash_ *= 1099511628211ULL;
    }
  }
  template <typename T>
  void add(const T& value) {
    static_assert(std::is_arithmetic_v<T> || std::is_enum_v<T>);
    add_bytes(&value, sizeof value);
  }
  void add(const std::string& text) {
    add(text.size());
    add_bytes(text.data(), text.size());
  }
  template <typename T>
  void add(const std::vector<T>& values) {
    add(values.size());
    for (const auto& v : values) add(v);
  }
  [[nodiscard]] std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = 14695981039346656037ULL;
};

void hash_op(Fnv1a& h, const Op& op) {
  h.add(op.index);
  h.add(op.name);
  h.add(op.stream);
  h.add(op.layer);
  h.add(op.phase);
  h.add(op.micro_batch);
  h.add(op.deps);
  h.add(op.body.index());
  if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
    const auto& s = c->shape;
    h.add(c->kind);
    h.add(c->dtype);
    h.add(c->flops);
    h.add(c->bytes);
    for (const auto v : {s.m, s.n, s.k, s.q_tokens, s.kv_tokens, s.q_start, s.q_stride, s.kv_start, s.kv_stride,
                         s.batch, s.heads, s.kv_heads, s.head_dim_qk, s.head_dim_v, s.topk, s.out_rows}) {
      h.add(v);
    }
    h.add(s.group_rows);
    h.add(s.causal);
    h.add(s.kv_shared);
  } else if (const auto* k = std::get_if<CollectiveOp>(&op.body)) {
    h.add(k->kind);
    h.add(k->family);
    h.add(k->group_index);
    h.add(k->group_size);
    h.add(k->dtype);
    h.add(k->bytes);
    h.add(k->send_bytes);
    h.add(k->recv_bytes);
    h.add(k->root);
    h.add(k->instance);
  } else {
    const auto& p = std::get<P2POp>(op.body);
    h.add(p.is_send);
    h.add(p.peer);
    h.add(p.bytes);
    h.add(p.dtype);
    h.add(p.match);
    h.add(p.group);
  }
}

}  // namespace

std::string schedule_hash(const Schedule& schedule) {
  Fnv1a h;
  h.add(meta_to_json(schedule.meta).dump());
  h.add(schedule.ranks.size());
  for (const auto& ops : schedule.ranks) {
    h.add(ops.size());
    for (const auto& op : ops) hash_op(h, op);
  }
  return fmt::format("{:016x}", h.value());
}

}  // namespace paratwin
