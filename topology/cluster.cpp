#include "topology/cluster.hpp"

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "topology/error.hpp"

namespace paratwin::detail {
/// Defined in the file cmake/EmbedTextFiles.cmake generates from topology/clusters/*.yaml: {stem, YAML text}.
const std::vector<std::pair<std::string_view, std::string_view>>& embedded_cluster_presets();
}  // namespace paratwin::detail

namespace paratwin {

namespace {

constexpr std::string_view kRailOptimizedName = "rail_optimized";
constexpr std::string_view kFatTreeName = "fat_tree";
constexpr std::string_view kNvSwitchName = "nvswitch";
/// Cluster files are a few dozen lines; anything this large is not one.
constexpr std::uintmax_t kMaxClusterFileBytes = std::uintmax_t{1} << 20;

/// Text of `text` fit for an error message: quoted, control bytes escaped, long values shortened.
std::string quote_for_message(std::string_view text) {
  constexpr std::size_t kMaxShown = 80;
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (text[i] == '"' || text[i] == '\\') {
      out += '\\';
      out += text[i];
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += text[i];
    }
  }
  if (text.size() > kMaxShown) out += "...";
  out += '"';
  return out;
}

std::string number_text(double value) {
  return fmt::format("{}", value);
}

/// One broken rule: the key path, the offending value as text, the rule.
struct Violation {
  std::string key;
  std::string value;
  std::string rule;
};

/// The value rules shared by the parser and validate_cluster(), checked in file order; the first broken one.
std::optional<Violation> first_violation(const Cluster& cluster) {
  if (cluster.name.empty()) return Violation{"name", "\"\"", "must be a non-empty string"};
  if (cluster.nodes < 1) return Violation{"nodes", std::to_string(cluster.nodes), "must be an integer >= 1"};
  if (cluster.gpus_per_node < 1) {
    return Violation{"gpus_per_node", std::to_string(cluster.gpus_per_node), "must be an integer >= 1"};
  }
  const std::int64_t total = std::int64_t{cluster.nodes} * cluster.gpus_per_node;
  if (total > kMaxClusterGpus) {
    const bool per_node_too_large = cluster.gpus_per_node > kMaxClusterGpus;
    return Violation{per_node_too_large ? "gpus_per_node" : "nodes",
                     std::to_string(per_node_too_large ? cluster.gpus_per_node : cluster.nodes),
                     fmt::format("nodes x gpus_per_node = {} x {} = {} GPUs exceeds the limit of {} GPUs",
                                 cluster.nodes, cluster.gpus_per_node, total, kMaxClusterGpus)};
  }
  if (cluster.gpu.name.empty()) return Violation{"gpu.name", "\"\"", "must be a non-empty string"};

  struct NumberRule {
    std::string_view key;
    double value;
    bool zero_allowed;
  };
  const auto check_number = [&](const NumberRule& rule) -> std::optional<Violation> {
    const bool ok = std::isfinite(rule.value) && (rule.zero_allowed ? rule.value >= 0 : rule.value > 0);
    if (ok) return std::nullopt;
    return Violation{std::string(rule.key), number_text(rule.value),
                     rule.zero_allowed ? "must be a finite number >= 0" : "must be a finite number > 0"};
  };
  const std::array<NumberRule, 4> gpu_rules = {{
      {"gpu.memory_bytes", cluster.gpu.memory_bytes, false},
      {"gpu.bf16_flops_per_s", cluster.gpu.bf16_flops, false},
      {"gpu.fp8_flops_per_s", cluster.gpu.fp8_flops, false},
      {"gpu.hbm_bytes_per_s", cluster.gpu.hbm_bytes_per_s, false},
  }};
  for (const NumberRule& rule : gpu_rules) {
    if (auto violation = check_number(rule)) return violation;
  }

  if (cluster.scale_up.kind != kNvSwitchName) {
    return Violation{"scale_up.kind", quote_for_message(cluster.scale_up.kind),
                     "must be \"nvswitch\" (the only scale-up fabric paratwin models)"};
  }
  if (auto violation =
          check_number({"scale_up.bandwidth_bytes_per_s", cluster.scale_up.bandwidth_bytes_per_s, false})) {
    return violation;
  }
  if (auto violation = check_number({"scale_up.latency_s", cluster.scale_up.latency_s, true})) return violation;

  const ScaleOutNetwork& net = cluster.scale_out;
  if (net.topology != ScaleOutTopology::kRailOptimized && net.topology != ScaleOutTopology::kFatTree) {
    return Violation{"scale_out.topology", std::to_string(static_cast<int>(net.topology)),
                     "must be rail_optimized or fat_tree"};
  }
  if (net.nics_per_node < 1) {
    return Violation{"scale_out.nics_per_node", std::to_string(net.nics_per_node), "must be an integer >= 1"};
  }
  if (auto violation = check_number({"scale_out.nic_bandwidth_bytes_per_s", net.nic_bandwidth_bytes_per_s, false})) {
    return violation;
  }
  if (auto violation = check_number({"scale_out.latency_s", net.latency_s, true})) return violation;
  if (!std::isfinite(net.oversubscription) || net.oversubscription < 1) {
    return Violation{"scale_out.oversubscription", number_text(net.oversubscription),
                     "must be a finite number >= 1 (the downlink:uplink ratio of the leaf switches)"};
  }
  if (net.topology == ScaleOutTopology::kRailOptimized && net.oversubscription != 1) {
    return Violation{"scale_out.oversubscription", number_text(net.oversubscription),
                     "must be 1 when scale_out.topology is rail_optimized (use fat_tree for an oversubscribed "
                     "network)"};
  }
  return std::nullopt;
}

/// Parses a plain decimal number ("141e9", "-0.5", "+2"); nullopt for anything else, "inf" and "nan" included.
/// Sets `out_of_range` when the text is a number a double cannot hold.
std::optional<double> parse_decimal(std::string_view text, bool& out_of_range) {
  out_of_range = false;
  if (!text.empty() && text.front() == '+') {
    text.remove_prefix(1);
    if (!text.empty() && (text.front() == '+' || text.front() == '-')) return std::nullopt;
  }
  if (text.empty()) return std::nullopt;
  const bool decimal_chars_only = std::all_of(text.begin(), text.end(), [](char ch) {
    return (ch >= '0' && ch <= '9') || ch == '.' || ch == 'e' || ch == 'E' || ch == '-' || ch == '+';
  });
  if (!decimal_chars_only) return std::nullopt;
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, std::chars_format::general);
  if (ec == std::errc::result_out_of_range && ptr == end) {
    out_of_range = true;
    return std::nullopt;
  }
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

/// What every key holds, for "missing key" messages. Order: the file order of the presets.
struct KeySpec {
  std::string_view path;
  std::string_view expected;
};
constexpr std::array<KeySpec, 20> kKeySpecs = {{
    {"name", "a non-empty string"},
    {"nodes", "an integer >= 1 (--nodes N overrides it)"},
    {"gpus_per_node", "an integer >= 1"},
    {"gpu", "a mapping with keys name, memory_bytes, bf16_flops_per_s, fp8_flops_per_s, hbm_bytes_per_s"},
    {"scale_up", "a mapping with keys kind, bandwidth_bytes_per_s, latency_s, nvls"},
    {"scale_out",
     "a mapping with keys topology, nics_per_node, nic_bandwidth_bytes_per_s, latency_s, oversubscription"},
    {"gpu.name", "a non-empty string"},
    {"gpu.memory_bytes", "a number > 0: HBM capacity in bytes"},
    {"gpu.bf16_flops_per_s", "a number > 0: dense BF16 tensor-core peak in FLOP/s"},
    {"gpu.fp8_flops_per_s", "a number > 0: dense FP8 tensor-core peak in FLOP/s"},
    {"gpu.hbm_bytes_per_s", "a number > 0: HBM bandwidth in bytes/s"},
    {"scale_up.kind", "\"nvswitch\" (optional)"},
    {"scale_up.bandwidth_bytes_per_s", "a number > 0: NVLink bandwidth per GPU per direction in bytes/s"},
    {"scale_up.latency_s", "a number >= 0: one GPU-to-GPU hop through the switch, in seconds"},
    {"scale_up.nvls", "true or false (optional, default false)"},
    {"scale_out.topology", "rail_optimized or fat_tree"},
    {"scale_out.nics_per_node", "an integer >= 1"},
    {"scale_out.nic_bandwidth_bytes_per_s", "a number > 0: bandwidth per NIC per direction in bytes/s"},
    {"scale_out.latency_s", "a number >= 0: NIC to NIC across the network, in seconds"},
    {"scale_out.oversubscription",
     "a number >= 1: the leaf downlink:uplink ratio (required for fat_tree; must be 1 for rail_optimized)"},
}};

std::string_view expected_of(std::string_view path) {
  for (const KeySpec& spec : kKeySpecs) {
    if (spec.path == path) return spec.expected;
  }
  return "a value";
}

std::string describe_node(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quote_for_message(node.Scalar());
    case YAML::NodeType::Null:
      return "null (no value)";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "undefined";
}

/// A key found in a mapping: its full path, where it was written, its value.
struct Field {
  std::string path;
  YAML::Mark mark;
  YAML::Node value;
};

/// Receives parser events and keeps none: lets count_documents() run the parser without building nodes.
class DiscardEvents final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& /*mark*/) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                       YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}
};

/// The number of YAML documents in `text`, counting at most two. Not YAML::LoadAll: on some malformed input (a ','
/// at the top level) yaml-cpp 0.7 reports an endless stream of empty documents and LoadAll allocates until the
/// process dies (jbeder/yaml-cpp#1040; fixed upstream by PR #1319, after 0.7).
int count_documents(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  DiscardEvents events;
  int documents = 0;
  while (documents < 2 && parser.HandleNextDocument(events)) ++documents;
  return documents;
}

/// Turns one YAML document into a Cluster, failing with messages that name the source, line, key, value and rule.
class ClusterParser {
 public:
  explicit ClusterParser(std::string_view source) : source_(source) {}

  Cluster parse(std::string_view text) {
    const std::string owned(text);
    const int documents = count_documents(owned);
    if (documents == 0) {
      fail(
          "{}: holds no YAML document; a cluster file is one mapping with keys name, nodes, gpus_per_node, gpu, "
          "scale_up, scale_out (see topology/clusters/README.md)",
          source_);
    }
    const YAML::Node root = YAML::Load(owned);  // the first document only
    if (!root.IsMap()) {
      fail(
          "{}: the top level is {}; a cluster file is one mapping with keys name, nodes, gpus_per_node, gpu, "
          "scale_up, scale_out (see topology/clusters/README.md)",
          where(root.Mark()), describe_node(root));
    }
    if (documents > 1)
      fail("{}: holds more than one YAML document (separated by ---); a cluster file holds one", source_);

    Cluster cluster;
    const Section top =
        section(Field{"", root.Mark(), root}, {"name", "nodes", "gpus_per_node", "gpu", "scale_up", "scale_out"});
    cluster.name = read_string(required(top, "name"));
    cluster.nodes = read_int(required(top, "nodes"));
    cluster.gpus_per_node = read_int(required(top, "gpus_per_node"));

    const Section gpu = section(required(top, "gpu"),
                                {"name", "memory_bytes", "bf16_flops_per_s", "fp8_flops_per_s", "hbm_bytes_per_s"});
    cluster.gpu.name = read_string(required(gpu, "name"));
    cluster.gpu.memory_bytes = read_number(required(gpu, "memory_bytes"));
    cluster.gpu.bf16_flops = read_number(required(gpu, "bf16_flops_per_s"));
    cluster.gpu.fp8_flops = read_number(required(gpu, "fp8_flops_per_s"));
    cluster.gpu.hbm_bytes_per_s = read_number(required(gpu, "hbm_bytes_per_s"));

    const Section up = section(required(top, "scale_up"), {"kind", "bandwidth_bytes_per_s", "latency_s", "nvls"});
    if (const Field* kind = find(up, "kind")) cluster.scale_up.kind = read_string(*kind);
    cluster.scale_up.bandwidth_bytes_per_s = read_number(required(up, "bandwidth_bytes_per_s"));
    cluster.scale_up.latency_s = read_number(required(up, "latency_s"));
    if (const Field* nvls = find(up, "nvls")) cluster.scale_up.nvls = read_bool(*nvls);

    const Section out = section(required(top, "scale_out"), {"topology", "nics_per_node", "nic_bandwidth_bytes_per_s",
                                                             "latency_s", "oversubscription"});
    cluster.scale_out.topology = read_topology(required(out, "topology"));
    cluster.scale_out.nics_per_node = read_int(required(out, "nics_per_node"));
    cluster.scale_out.nic_bandwidth_bytes_per_s = read_number(required(out, "nic_bandwidth_bytes_per_s"));
    cluster.scale_out.latency_s = read_number(required(out, "latency_s"));
    if (const Field* ratio = find(out, "oversubscription")) {
      cluster.scale_out.oversubscription = read_number(*ratio);
    } else if (cluster.scale_out.topology == ScaleOutTopology::kFatTree) {
      fail("{}: missing key 'scale_out.oversubscription': required when scale_out.topology is fat_tree ({})",
           where(out.field.mark), expected_of("scale_out.oversubscription"));
    }

    if (const std::optional<Violation> violation = first_violation(cluster)) {
      const auto written = written_.find(violation->key);
      if (written == written_.end()) {
        fail("{}: {} = {}: {}", source_, violation->key, violation->value, violation->rule);
      }
      fail("{}: {} = {}: {}", where(written->second.mark), violation->key, written->second.text, violation->rule);
    }
    return cluster;
  }

 private:
  /// A mapping whose keys were checked against the allowed ones.
  struct Section {
    Field field;
    std::vector<Field> entries;
  };

  struct Written {
    YAML::Mark mark;
    std::string text;
  };

  [[nodiscard]] std::string where(const YAML::Mark& mark) const {
    if (mark.is_null() || mark.line < 0) return source_;
    return fmt::format("{}: line {}", source_, mark.line + 1);
  }

  [[noreturn]] void fail_value(const Field& field, std::string_view rule) const {
    fail("{}: {} = {}: {}", where(field.mark), field.path, describe_node(field.value), rule);
  }

  Section section(const Field& field, std::initializer_list<std::string_view> allowed) const {
    if (!field.value.IsMap()) fail_value(field, fmt::format("must be {}", expected_of(field.path)));
    Section result{field, {}};
    const std::string prefix = field.path.empty() ? "" : field.path + ".";
    for (auto it = field.value.begin(); it != field.value.end(); ++it) {
      // Copies: `it->first` lives in a proxy that dies at the end of the full expression.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        fail("{}: a key {} is {}; keys must be plain names", where(key.Mark()),
             field.path.empty() ? "at the top level" : "in '" + field.path + "'", describe_node(key));
      }
      const std::string path = prefix + key.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key.Scalar()) == allowed.end()) {
        std::string names;
        for (std::string_view name : allowed) names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
        fail("{}: unknown key {} (allowed {}: {})", where(key.Mark()), quote_for_message(path),
             field.path.empty() ? "at the top level" : "in '" + field.path + "'", names);
      }
      const bool duplicate = std::any_of(result.entries.begin(), result.entries.end(),
                                         [&](const Field& entry) { return entry.path == path; });
      if (duplicate) fail("{}: key '{}' is given twice", where(key.Mark()), path);
      result.entries.push_back(Field{path, key.Mark(), value});
    }
    return result;
  }

  static const Field* find(const Section& section, std::string_view key) {
    const std::string path =
        section.field.path.empty() ? std::string(key) : section.field.path + "." + std::string(key);
    for (const Field& entry : section.entries) {
      if (entry.path == path) return &entry;
    }
    return nullptr;
  }

  const Field& required(const Section& section, std::string_view key) const {
    if (const Field* field = find(section, key)) return *field;
    const std::string path =
        section.field.path.empty() ? std::string(key) : section.field.path + "." + std::string(key);
    fail("{}: missing key '{}' ({})", where(section.field.mark), path, expected_of(path));
  }

  /// Records the written value of a key so that rule violations found later quote it as the user wrote it.
  void remember(const Field& field) { written_[field.path] = Written{field.mark, describe_node(field.value)}; }

  std::string read_string(const Field& field) {
    if (!field.value.IsScalar()) fail_value(field, fmt::format("must be {}", expected_of(field.path)));
    remember(field);
    return field.value.Scalar();
  }

  /// True for a plain (unquoted) scalar, or one explicitly tagged with one of `tags`.
  static bool plain_or_tagged(const YAML::Node& node, std::initializer_list<std::string_view> tags) {
    const std::string& tag = node.Tag();
    return tag == "?" || std::find(tags.begin(), tags.end(), tag) != tags.end();
  }

  double read_number(const Field& field) {
    if (!field.value.IsScalar()) fail_value(field, fmt::format("must be {}", expected_of(field.path)));
    if (!plain_or_tagged(field.value, {"tag:yaml.org,2002:float", "tag:yaml.org,2002:int"})) {
      fail_value(field, "must be a number, not a string (quoted or tagged)");
    }
    bool out_of_range = false;
    const std::optional<double> value = parse_decimal(field.value.Scalar(), out_of_range);
    if (out_of_range) fail_value(field, "is outside the range of a double-precision number");
    if (!value) fail_value(field, "must be a decimal number such as 450e9 or 0.6e-6");
    remember(field);
    return *value;
  }

  int read_int(const Field& field) {
    const double value = read_number(field);
    if (std::trunc(value) != value) fail_value(field, "must be a whole number");
    if (value < static_cast<double>(INT_MIN) || value > static_cast<double>(INT_MAX)) {
      fail_value(field, fmt::format("is outside the integer range [{}, {}]", INT_MIN, INT_MAX));
    }
    return static_cast<int>(value);
  }

  bool read_bool(const Field& field) {
    if (field.value.IsScalar() && plain_or_tagged(field.value, {"tag:yaml.org,2002:bool"})) {
      const std::string& text = field.value.Scalar();
      if (text == "true" || text == "True" || text == "TRUE") return true;
      if (text == "false" || text == "False" || text == "FALSE") return false;
    }
    fail_value(field, "must be true or false");
  }

  ScaleOutTopology read_topology(const Field& field) {
    if (field.value.IsScalar()) {
      const std::string& text = field.value.Scalar();
      if (text == kRailOptimizedName) return ScaleOutTopology::kRailOptimized;
      if (text == kFatTreeName) return ScaleOutTopology::kFatTree;
    }
    fail_value(field, "must be rail_optimized or fat_tree");
  }

  std::string source_;
  std::map<std::string, Written, std::less<>> written_;
};

/// Escapes `text` as a YAML double-quoted scalar.
std::string yaml_quote(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

std::optional<std::string_view> find_preset(std::string_view name) {
  for (const auto& [stem, text] : detail::embedded_cluster_presets()) {
    if (stem == name) return text;
  }
  return std::nullopt;
}

std::string preset_list() {
  std::string names;
  for (const std::string& name : cluster_preset_names()) names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
  return names;
}

std::string read_cluster_file(std::string_view path_text) {
  const std::filesystem::path path{std::string(path_text)};
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    fail("--cluster {}: no built-in preset of that name ({}) and no such file{}", quote_for_message(path_text),
         preset_list(), ec && ec != std::errc::no_such_file_or_directory ? fmt::format(" ({})", ec.message()) : "");
  }
  if (!std::filesystem::is_regular_file(status)) {
    fail("--cluster {}: not a regular file; expected a cluster YAML file or a preset ({})",
         quote_for_message(path_text), preset_list());
  }
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("--cluster {}: cannot read the file: {}", quote_for_message(path_text), ec.message());
  if (size > kMaxClusterFileBytes) {
    fail("--cluster {}: the file has {} bytes; a cluster file is at most {} bytes", quote_for_message(path_text), size,
         kMaxClusterFileBytes);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--cluster {}: cannot open the file for reading", quote_for_message(path_text));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad() || text.fail()) {
    // An empty file makes operator<< set failbit on `text` without being an error.
    if (size != 0 || in.bad()) fail("--cluster {}: cannot read the file", quote_for_message(path_text));
  }
  return text.str();
}

}  // namespace

std::string_view to_string(ScaleOutTopology topology) {
  switch (topology) {
    case ScaleOutTopology::kRailOptimized:
      return kRailOptimizedName;
    case ScaleOutTopology::kFatTree:
      return kFatTreeName;
  }
  return "unknown";
}

double Cluster::per_gpu_scale_out_bytes_per_s() const {
  PARATWIN_ASSERT(gpus_per_node > 0, "cluster '{}' has gpus_per_node {}", name, gpus_per_node);
  const double node_bytes_per_s = static_cast<double>(scale_out.nics_per_node) * scale_out.nic_bandwidth_bytes_per_s;
  const double share = node_bytes_per_s / static_cast<double>(gpus_per_node);
  return scale_out.topology == ScaleOutTopology::kFatTree ? share / scale_out.oversubscription : share;
}

std::vector<std::string> cluster_preset_names() {
  std::vector<std::string> names;
  for (const auto& preset : detail::embedded_cluster_presets()) names.emplace_back(preset.first);
  std::sort(names.begin(), names.end());
  return names;
}

std::string cluster_preset_yaml(std::string_view name) {
  if (const std::optional<std::string_view> text = find_preset(name)) return std::string(*text);
  fail("unknown cluster preset {} (built-in presets: {})", quote_for_message(name), preset_list());
}

Cluster parse_cluster_yaml(std::string_view yaml_text, std::string_view source) {
  // yaml-cpp reports malformed input with its own exceptions; every one becomes a paratwin::Error naming the source.
  try {
    return ClusterParser(source).parse(yaml_text);
  } catch (const Error&) {
    throw;
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own text for this one is "bad file".
    fail("{}: line {}, column {}: malformed YAML: nested more than {} levels deep (a cluster file needs two)", source,
         e.mark.line + 1, e.mark.column + 1, e.depth());
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null() || e.mark.line < 0) fail("{}: malformed YAML: {}", source, e.msg);
    fail("{}: line {}, column {}: malformed YAML: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  } catch (const InternalError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: cannot read the YAML: {}", source, e.what());
  }
}

Cluster load_cluster(std::string_view name_or_path, int nodes) {
  if (nodes < 0) fail("--nodes {}: must be >= 1 (or 0 to keep the cluster file's node count)", nodes);
  Cluster cluster;
  if (const std::optional<std::string_view> preset = find_preset(name_or_path)) {
    cluster = parse_cluster_yaml(
        *preset, fmt::format("built-in preset '{}' (topology/clusters/{}.yaml)", name_or_path, name_or_path));
  } else {
    if (name_or_path.empty()) fail("--cluster \"\": expected a preset name ({}) or a YAML file path", preset_list());
    cluster = parse_cluster_yaml(read_cluster_file(name_or_path), name_or_path);
  }
  if (nodes > 0) {
    const std::int64_t total = std::int64_t{nodes} * cluster.gpus_per_node;
    if (total > kMaxClusterGpus) {
      fail("--nodes {}: {} nodes x {} GPUs per node = {} GPUs exceeds the limit of {} GPUs", nodes, nodes,
           cluster.gpus_per_node, total, kMaxClusterGpus);
    }
    cluster.nodes = nodes;
  }
  return cluster;
}

void validate_cluster(const Cluster& cluster) {
  if (const std::optional<Violation> violation = first_violation(cluster)) {
    fail("cluster {}: {} = {}: {}", quote_for_message(cluster.name), violation->key, violation->value, violation->rule);
  }
}

std::string cluster_to_yaml(const Cluster& cluster) {
  std::string out;
  out += fmt::format("name: {}\n", yaml_quote(cluster.name));
  out += fmt::format("nodes: {}\n", cluster.nodes);
  out += fmt::format("gpus_per_node: {}\n", cluster.gpus_per_node);
  out += "gpu:\n";
  out += fmt::format("  name: {}\n", yaml_quote(cluster.gpu.name));
  out += fmt::format("  memory_bytes: {}\n", cluster.gpu.memory_bytes);
  out += fmt::format("  bf16_flops_per_s: {}\n", cluster.gpu.bf16_flops);
  out += fmt::format("  fp8_flops_per_s: {}\n", cluster.gpu.fp8_flops);
  out += fmt::format("  hbm_bytes_per_s: {}\n", cluster.gpu.hbm_bytes_per_s);
  out += "scale_up:\n";
  out += fmt::format("  kind: {}\n", yaml_quote(cluster.scale_up.kind));
  out += fmt::format("  bandwidth_bytes_per_s: {}\n", cluster.scale_up.bandwidth_bytes_per_s);
  out += fmt::format("  latency_s: {}\n", cluster.scale_up.latency_s);
  out += fmt::format("  nvls: {}\n", cluster.scale_up.nvls);
  out += "scale_out:\n";
  out += fmt::format("  topology: {}\n", to_string(cluster.scale_out.topology));
  out += fmt::format("  nics_per_node: {}\n", cluster.scale_out.nics_per_node);
  out += fmt::format("  nic_bandwidth_bytes_per_s: {}\n", cluster.scale_out.nic_bandwidth_bytes_per_s);
  out += fmt::format("  latency_s: {}\n", cluster.scale_out.latency_s);
  out += fmt::format("  oversubscription: {}\n", cluster.scale_out.oversubscription);
  return out;
}

}  // namespace paratwin
