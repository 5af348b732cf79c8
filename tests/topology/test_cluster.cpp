// Cluster presets, the cluster YAML parser and its error messages.

#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "topology/cluster.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

/// A cluster file as ordered (key path, value text) pairs, so tests can change, drop or add single keys.
using Doc = std::vector<std::pair<std::string, std::string>>;

Doc base_doc() {
  return {
      {"name", "test-cluster"},
      {"nodes", "2"},
      {"gpus_per_node", "8"},
      {"gpu.name", "H200-SXM"},
      {"gpu.memory_bytes", "141e9"},
      {"gpu.bf16_flops_per_s", "989.4e12"},
      {"gpu.fp8_flops_per_s", "1978.9e12"},
      {"gpu.hbm_bytes_per_s", "4.8e12"},
      {"scale_up.kind", "nvswitch"},
      {"scale_up.bandwidth_bytes_per_s", "450e9"},
      {"scale_up.latency_s", "0.6e-6"},
      {"scale_up.nvls", "false"},
      {"scale_out.topology", "fat_tree"},
      {"scale_out.nics_per_node", "8"},
      {"scale_out.nic_bandwidth_bytes_per_s", "50e9"},
      {"scale_out.latency_s", "2.7e-6"},
      {"scale_out.oversubscription", "2"},
  };
}

/// The cluster base_doc() describes.
Cluster base_cluster() {
  Cluster c;
  c.name = "test-cluster";
  c.nodes = 2;
  c.gpus_per_node = 8;
  c.gpu = GpuSpec{"H200-SXM", 141e9, 989.4e12, 1978.9e12, 4.8e12};
  c.scale_up = ScaleUpFabric{"nvswitch", 450e9, 0.6e-6, false};
  c.scale_out = ScaleOutNetwork{8, 50e9, 2.7e-6, ScaleOutTopology::kFatTree, 2.0};
  return c;
}

/// Renders a Doc as block YAML: top-level keys as they come, "a.b" keys under a "a:" header.
std::string render(const Doc& doc) {
  std::string out;
  std::string section;
  for (const auto& [path, value] : doc) {
    const auto dot = path.find('.');
    if (dot == std::string::npos) {
      section.clear();
      out += path + ": " + value + "\n";
      continue;
    }
    const std::string head = path.substr(0, dot);
    if (head != section) {
      out += head + ":\n";
      section = head;
    }
    out += "  " + path.substr(dot + 1) + ": " + value + "\n";
  }
  return out;
}

/// `doc` with `path` set to `value`; a new key goes after the last key of its section (or at the end).
Doc with(Doc doc, const std::string& path, const std::string& value) {
  for (auto& entry : doc) {
    if (entry.first == path) {
      entry.second = value;
      return doc;
    }
  }
  const auto dot = path.find('.');
  auto at = doc.end();
  if (dot != std::string::npos) {
    const std::string section = path.substr(0, dot + 1);
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (it->first.rfind(section, 0) == 0) at = it + 1;
    }
  }
  doc.insert(at, {path, value});
  return doc;
}

Doc without(Doc doc, const std::string& prefix) {
  doc.erase(std::remove_if(
                doc.begin(), doc.end(),
                [&](const auto& entry) { return entry.first == prefix || entry.first.rfind(prefix + ".", 0) == 0; }),
            doc.end());
  return doc;
}

Cluster parse(const Doc& doc) {
  return parse_cluster_yaml(render(doc), "test.yaml");
}

/// The message of the paratwin::Error that parsing `text` throws (fails the test if it does not throw one).
std::string parse_error(const std::string& text) {
  try {
    (void)parse_cluster_yaml(text, "test.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no paratwin::Error for:\n" << text);
  return "";
}

std::string load_error(const std::string& name_or_path, int nodes) {
  try {
    (void)load_cluster(name_or_path, nodes);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no paratwin::Error for load_cluster(" << name_or_path << ", " << nodes << ")");
  return "";
}

/// A fresh path under the temporary directory, removed with its contents when the object dies.
class TempPath {
 public:
  explicit TempPath(const std::string& stem)
      : path_(std::filesystem::temp_directory_path() /
              fmt::format("paratwin-test-{}-{}", stem, std::random_device{}())) {}
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("presets: the built-in list", "[cluster]") {
  CHECK(cluster_preset_names() == std::vector<std::string>{"h100-sxm", "h200-sxm", "h200-sxm-fat-tree"});
  for (const std::string& name : cluster_preset_names()) {
    INFO(name);
    const Cluster cluster = load_cluster(name, 0);
    CHECK(cluster.name == name);
    CHECK_NOTHROW(validate_cluster(cluster));
    CHECK(parse_cluster_yaml(cluster_preset_yaml(name), name) == cluster);
  }
  CHECK_THROWS_WITH(cluster_preset_yaml("h300"), Contains("h300") && Contains("h100-sxm, h200-sxm, h200-sxm-fat-tree"));
}

TEST_CASE("presets: H200 SXM carries the cited figures", "[cluster]") {
  const Cluster c = load_cluster("h200-sxm", 0);
  CHECK(c.nodes == 1);
  CHECK(c.gpus_per_node == 8);
  CHECK(c.gpu.name == "H200-SXM");
  CHECK(c.gpu.memory_bytes == 141e9);      // 141 GB HBM3e
  CHECK(c.gpu.bf16_flops == 989.4e12);     // dense BF16
  CHECK(c.gpu.fp8_flops == 1978.9e12);     // dense FP8
  CHECK(c.gpu.hbm_bytes_per_s == 4.8e12);  // 4.8 TB/s
  CHECK(c.scale_up.kind == "nvswitch");
  CHECK(c.scale_up.bandwidth_bytes_per_s == 450e9);  // NVLink4 line rate per direction
  CHECK(c.scale_up.latency_s == 0.6e-6);
  CHECK_FALSE(c.scale_up.nvls);  // off, like the test machines
  CHECK(c.scale_out.topology == ScaleOutTopology::kRailOptimized);
  CHECK(c.scale_out.nics_per_node == 8);
  CHECK(c.scale_out.nic_bandwidth_bytes_per_s == 50e9);  // 400 Gb/s NDR
  CHECK(c.scale_out.latency_s == 2.7e-6);
  CHECK(c.scale_out.oversubscription == 1.0);
  CHECK(c.per_gpu_scale_out_bytes_per_s() == 50e9);
  CHECK(c.total_gpus() == 8);
}

TEST_CASE("presets: H100 SXM carries the cited figures", "[cluster]") {
  const Cluster c = load_cluster("h100-sxm", 0);
  CHECK(c.gpus_per_node == 8);
  CHECK(c.gpu.name == "H100-SXM");
  CHECK(c.gpu.memory_bytes == 80e9);
  CHECK(c.gpu.bf16_flops == 989.4e12);
  CHECK(c.gpu.fp8_flops == 1978.9e12);
  CHECK(c.gpu.hbm_bytes_per_s == 3.35e12);
  CHECK(c.scale_up.bandwidth_bytes_per_s == 450e9);
  CHECK_FALSE(c.scale_up.nvls);
  CHECK(c.scale_out.topology == ScaleOutTopology::kRailOptimized);
  CHECK(c.scale_out.nics_per_node == 8);
  CHECK(c.scale_out.nic_bandwidth_bytes_per_s == 50e9);
}

TEST_CASE("presets: the fat-tree variant halves the per-GPU network share", "[cluster]") {
  const Cluster c = load_cluster("h200-sxm-fat-tree", 0);
  const Cluster rail = load_cluster("h200-sxm", 0);
  CHECK(c.scale_out.topology == ScaleOutTopology::kFatTree);
  CHECK(c.scale_out.oversubscription == 2.0);
  CHECK(c.per_gpu_scale_out_bytes_per_s() == 25e9);
  CHECK(c.gpu == rail.gpu);
  CHECK(c.scale_up == rail.scale_up);
}

TEST_CASE("presets: every figure carries a comment citing its source", "[cluster]") {
  for (const std::string& name : cluster_preset_names()) {
    const std::string text = cluster_preset_yaml(name);
    std::size_t start = 0;
    int figures = 0;
    while (start < text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      const std::string line = text.substr(start, end - start);
      start = end + 1;
      const std::size_t colon = line.find(':');
      if (line.empty() || line.front() == '#' || colon == std::string::npos) continue;
      const std::string value = line.substr(colon + 1, line.find('#') - colon - 1);
      const bool is_section = value.find_first_not_of(' ') == std::string::npos;
      if (is_section || line.rfind("name:", 0) == 0 || line.rfind("  name:", 0) == 0) continue;
      INFO(name << ": " << line);
      CHECK(line.find(" # ") != std::string::npos);
      ++figures;
    }
    CHECK(figures == 15);
  }
}

TEST_CASE("load_cluster: --nodes, files and bad names", "[cluster]") {
  SECTION("--nodes overrides the node count") {
    const Cluster c = load_cluster("h200-sxm", 16);
    CHECK(c.nodes == 16);
    CHECK(c.total_gpus() == 128);
  }
  SECTION("--nodes must be >= 1 and stay under the GPU limit") {
    CHECK_THAT(load_error("h200-sxm", -1), Contains("--nodes -1") && Contains(">= 1"));
    CHECK_THAT(load_error("h200-sxm", 200000),
               Contains("--nodes 200000") && Contains("1600000") && Contains(std::to_string(kMaxClusterGpus)));
    CHECK(load_cluster("h200-sxm", kMaxClusterGpus / 8).total_gpus() == kMaxClusterGpus);
  }
  SECTION("a file path loads the file") {
    const TempPath file("cluster.yaml");
    write_text(file.path(), render(base_doc()));
    const Cluster c = load_cluster(file.path().string(), 0);
    CHECK(c == base_cluster());
    CHECK(load_cluster(file.path().string(), 3).nodes == 3);
  }
  SECTION("errors in a file name the file") {
    const TempPath file("bad.yaml");
    write_text(file.path(), render(with(base_doc(), "scale_out.nic_bandwidth_bytes_per_s", "-50e9")));
    CHECK_THAT(load_error(file.path().string(), 0), StartsWith(file.path().string()) &&
                                                        Contains("scale_out.nic_bandwidth_bytes_per_s") &&
                                                        Contains("-50e9") && Contains("> 0"));
  }
  SECTION("neither a preset nor a file") {
    CHECK_THAT(load_error("h300-sxm", 0), Contains("h300-sxm") && Contains("no such file") && Contains("h200-sxm"));
    CHECK_THAT(load_error("", 0), Contains("--cluster") && Contains("h200-sxm"));
  }
  SECTION("a directory is not a cluster file") {
    const TempPath dir("dir");
    std::filesystem::create_directory(dir.path());
    CHECK_THAT(load_error(dir.path().string(), 0), Contains(dir.path().string()) && Contains("not a regular file"));
  }
  SECTION("an oversized file is refused before it is read") {
    const TempPath file("huge.yaml");
    write_text(file.path(), render(base_doc()) + std::string(std::size_t{2} << 20, '#'));
    CHECK_THAT(load_error(file.path().string(), 0), Contains("bytes"));
  }
  SECTION("an empty file") {
    const TempPath file("empty.yaml");
    write_text(file.path(), "");
    CHECK_THAT(load_error(file.path().string(), 0), Contains(file.path().string()) && Contains("no YAML document"));
  }
}

TEST_CASE("round trip: every key lands in its field", "[cluster]") {
  CHECK(parse(base_doc()) == base_cluster());

  struct KeyCase {
    std::string path;
    std::string text;
    std::function<void(Cluster&)> expect;
  };
  const std::vector<KeyCase> cases = {
      {"name", "\"my cluster: #1\"", [](Cluster& c) { c.name = "my cluster: #1"; }},
      {"nodes", "17", [](Cluster& c) { c.nodes = 17; }},
      {"gpus_per_node", "4", [](Cluster& c) { c.gpus_per_node = 4; }},
      {"gpu.name", "B200", [](Cluster& c) { c.gpu.name = "B200"; }},
      {"gpu.memory_bytes", "80e9", [](Cluster& c) { c.gpu.memory_bytes = 80e9; }},
      {"gpu.bf16_flops_per_s", "1.5e15", [](Cluster& c) { c.gpu.bf16_flops = 1.5e15; }},
      {"gpu.fp8_flops_per_s", "3e15", [](Cluster& c) { c.gpu.fp8_flops = 3e15; }},
      {"gpu.hbm_bytes_per_s", "3.35e12", [](Cluster& c) { c.gpu.hbm_bytes_per_s = 3.35e12; }},
      {"scale_up.kind", "\"nvswitch\"", [](Cluster& c) { c.scale_up.kind = "nvswitch"; }},
      {"scale_up.bandwidth_bytes_per_s", "370.8e9", [](Cluster& c) { c.scale_up.bandwidth_bytes_per_s = 370.8e9; }},
      {"scale_up.latency_s", "0", [](Cluster& c) { c.scale_up.latency_s = 0; }},
      {"scale_up.nvls", "true", [](Cluster& c) { c.scale_up.nvls = true; }},
      {"scale_out.topology", "rail_optimized",
       [](Cluster& c) { c.scale_out.topology = ScaleOutTopology::kRailOptimized; }},
      {"scale_out.nics_per_node", "4", [](Cluster& c) { c.scale_out.nics_per_node = 4; }},
      {"scale_out.nic_bandwidth_bytes_per_s", "25e9", [](Cluster& c) { c.scale_out.nic_bandwidth_bytes_per_s = 25e9; }},
      {"scale_out.latency_s", "5e-6", [](Cluster& c) { c.scale_out.latency_s = 5e-6; }},
      {"scale_out.oversubscription", "1.5", [](Cluster& c) { c.scale_out.oversubscription = 1.5; }},
  };
  for (const KeyCase& key : cases) {
    INFO(key.path << ": " << key.text);
    Doc doc = with(base_doc(), key.path, key.text);
    if (key.path == "scale_out.topology") doc = with(doc, "scale_out.oversubscription", "1");
    Cluster expected = base_cluster();
    if (key.path == "scale_out.topology") expected.scale_out.oversubscription = 1;
    key.expect(expected);
    const Cluster parsed = parse(doc);
    CHECK(parsed == expected);
    CHECK(parse_cluster_yaml(cluster_to_yaml(parsed), "round-trip") == parsed);
  }
  // Every key of the schema was exercised.
  CHECK(cases.size() == base_doc().size());
}

TEST_CASE("round trip: optional keys and number spellings", "[cluster]") {
  const Cluster base = base_cluster();
  CHECK(parse(without(base_doc(), "scale_up.kind")).scale_up.kind == "nvswitch");
  CHECK_FALSE(parse(without(base_doc(), "scale_up.nvls")).scale_up.nvls);
  const Doc rail = without(with(base_doc(), "scale_out.topology", "rail_optimized"), "scale_out.oversubscription");
  CHECK(parse(rail).scale_out.oversubscription == 1.0);

  for (const std::string spelling :
       {"141e9", "141E9", "+141e9", "1.41e11", "141000000000", "141000000000.0", "!!float 141e9"}) {
    INFO(spelling);
    CHECK(parse(with(base_doc(), "gpu.memory_bytes", spelling)).gpu.memory_bytes == base.gpu.memory_bytes);
  }
  for (const std::string spelling : {"16", "16.0", "1.6e1", "+16"}) {
    INFO(spelling);
    CHECK(parse(with(base_doc(), "nodes", spelling)).nodes == 16);
  }
  CHECK(parse(with(base_doc(), "scale_up.nvls", "True")).scale_up.nvls);
  CHECK(parse(with(base_doc(), "name", "'quoted'")).name == "quoted");
  // Flow style and anchors are plain YAML and work.
  const std::string flow =
      "{name: f, nodes: 1, gpus_per_node: 2, gpu: {name: g, memory_bytes: &big 1e9, bf16_flops_per_s: *big, "
      "fp8_flops_per_s: 2e9, hbm_bytes_per_s: 1e12}, scale_up: {bandwidth_bytes_per_s: 1e11, latency_s: 1e-6}, "
      "scale_out: {topology: rail_optimized, nics_per_node: 1, nic_bandwidth_bytes_per_s: 1e10, latency_s: 0}}";
  const Cluster c = parse_cluster_yaml(flow, "flow.yaml");
  CHECK(c.gpu.bf16_flops == 1e9);
  CHECK(c.scale_out.latency_s == 0);
}

TEST_CASE("round trip: cluster_to_yaml of random valid clusters", "[cluster]") {
  std::mt19937 rng(20261128);
  const auto pick = [&](double lo_exp, double hi_exp) {
    return std::pow(10.0, std::uniform_real_distribution<double>(lo_exp, hi_exp)(rng));
  };
  const auto int_in = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const auto random_name = [&] {
    std::string name;
    const int length = int_in(1, 24);
    for (int i = 0; i < length; ++i) name += static_cast<char>(int_in(0x20, 0x7e));
    return name;
  };
  for (int i = 0; i < 300; ++i) {
    Cluster c;
    c.name = random_name();
    c.gpus_per_node = int_in(1, 64);
    c.nodes = int_in(1, kMaxClusterGpus / c.gpus_per_node);
    c.gpu = GpuSpec{random_name(), pick(9, 12), pick(12, 16), pick(12, 16), pick(11, 13)};
    c.scale_up = ScaleUpFabric{"nvswitch", pick(9, 12), int_in(0, 3) == 0 ? 0.0 : pick(-8, -4), int_in(0, 1) == 1};
    const bool fat = int_in(0, 1) == 1;
    c.scale_out = ScaleOutNetwork{int_in(1, 16), pick(9, 11), pick(-7, -4),
                                  fat ? ScaleOutTopology::kFatTree : ScaleOutTopology::kRailOptimized,
                                  fat ? 1.0 + pick(-3, 1) : 1.0};
    REQUIRE_NOTHROW(validate_cluster(c));
    const std::string text = cluster_to_yaml(c);
    INFO(text);
    CHECK(parse_cluster_yaml(text, "random.yaml") == c);
  }
}

TEST_CASE("bad input: unknown keys", "[cluster]") {
  CHECK_THAT(parse_error(render(with(base_doc(), "bogus", "1"))),
             StartsWith("test.yaml") && Contains("unknown key \"bogus\"") && Contains("gpus_per_node"));
  CHECK_THAT(parse_error(render(with(base_doc(), "scale_out.nic_bw", "50e9"))),
             Contains("unknown key \"scale_out.nic_bw\"") && Contains("nic_bandwidth_bytes_per_s"));
  CHECK_THAT(parse_error(render(with(base_doc(), "gpu.bf16_flops", "1e15"))),
             Contains("\"gpu.bf16_flops\"") && Contains("bf16_flops_per_s"));
}

TEST_CASE("bad input: every required key missing", "[cluster]") {
  const std::vector<std::string> optional_keys = {"scale_up.kind", "scale_up.nvls"};
  for (const auto& [path, value] : base_doc()) {
    if (std::find(optional_keys.begin(), optional_keys.end(), path) != optional_keys.end()) continue;
    INFO(path);
    CHECK_THAT(parse_error(render(without(base_doc(), path))),
               StartsWith("test.yaml") && Contains("missing key '" + path + "'"));
  }
  for (const std::string section : {"gpu", "scale_up", "scale_out"}) {
    INFO(section);
    CHECK_THAT(parse_error(render(without(base_doc(), section))), Contains("missing key '" + section + "'"));
  }
  CHECK_THAT(parse_error(render(without(base_doc(), "scale_out.oversubscription"))),
             Contains("scale_out.oversubscription") && Contains("fat_tree"));
}

TEST_CASE("bad input: wrong types", "[cluster]") {
  struct TypeCase {
    std::string path;
    std::string text;
    std::string shown;  // the value as the message shows it
    std::string rule;
  };
  const std::vector<TypeCase> cases = {
      {"nodes", "eight", "\"eight\"", "decimal number"},
      {"nodes", "8.5", "\"8.5\"", "whole number"},
      {"nodes", "3e9", "\"3e9\"", "outside the integer range"},
      {"gpus_per_node", "-3e12", "\"-3e12\"", "outside the integer range"},
      {"gpu.memory_bytes", "\"141e9\"", "\"141e9\"", "not a string"},
      {"gpu.memory_bytes", "!!str 141e9", "\"141e9\"", "not a string"},
      {"gpu.memory_bytes", "[141e9]", "a sequence", "must be a number"},
      {"gpu.memory_bytes", "{a: 1}", "a mapping", "must be a number"},
      {"gpu.memory_bytes", "", "null", "must be a number"},
      {"gpu.memory_bytes", "141 GB", "\"141 GB\"", "decimal number"},
      {"gpu.memory_bytes", "0x10", "\"0x10\"", "decimal number"},
      {"gpu.memory_bytes", "1_000", "\"1_000\"", "decimal number"},
      {"gpu.hbm_bytes_per_s", ".inf", "\".inf\"", "decimal number"},
      {"gpu.hbm_bytes_per_s", "inf", "\"inf\"", "decimal number"},
      {"gpu.hbm_bytes_per_s", "nan", "\"nan\"", "decimal number"},
      {"gpu.hbm_bytes_per_s", "1e999", "\"1e999\"", "outside the range"},
      {"scale_up.nvls", "yes", "\"yes\"", "true or false"},
      {"scale_up.nvls", "1", "\"1\"", "true or false"},
      {"scale_up.nvls", "\"true\"", "\"true\"", "true or false"},
      {"scale_out.topology", "torus", "\"torus\"", "rail_optimized or fat_tree"},
      {"scale_out.topology", "[fat_tree]", "a sequence", "rail_optimized or fat_tree"},
      {"name", "[a, b]", "a sequence", "non-empty string"},
      {"name", "", "null", "non-empty string"},
  };
  for (const TypeCase& c : cases) {
    INFO(c.path << ": " << c.text);
    CHECK_THAT(parse_error(render(with(base_doc(), c.path, c.text))),
               StartsWith("test.yaml: line ") && Contains(c.path + " = " + c.shown) && Contains(c.rule));
  }
  // A whole section of the wrong type.
  const Doc scalar_gpu = with(without(base_doc(), "gpu"), "gpu", "5");
  CHECK_THAT(parse_error(render(scalar_gpu)), Contains("gpu = \"5\"") && Contains("must be a mapping"));
}

TEST_CASE("bad input: values that break their rule", "[cluster]") {
  const std::vector<std::string> positive = {
      "gpu.memory_bytes",    "gpu.bf16_flops_per_s",           "gpu.fp8_flops_per_s",
      "gpu.hbm_bytes_per_s", "scale_up.bandwidth_bytes_per_s", "scale_out.nic_bandwidth_bytes_per_s"};
  for (const std::string& path : positive) {
    for (const std::string value : {"0", "-1e9", "-0"}) {
      INFO(path << " = " << value);
      CHECK_THAT(parse_error(render(with(base_doc(), path, value))),
                 StartsWith("test.yaml: line ") && Contains(path + " = \"" + value + "\"") && Contains("> 0"));
    }
  }
  for (const std::string path : {"scale_up.latency_s", "scale_out.latency_s"}) {
    INFO(path);
    CHECK_THAT(parse_error(render(with(base_doc(), path, "-1e-6"))),
               Contains(path + " = \"-1e-6\"") && Contains(">= 0"));
  }
  for (const std::string path : {"nodes", "gpus_per_node", "scale_out.nics_per_node"}) {
    INFO(path);
    CHECK_THAT(parse_error(render(with(base_doc(), path, "0"))), Contains(path + " = \"0\"") && Contains(">= 1"));
    CHECK_THAT(parse_error(render(with(base_doc(), path, "-4"))), Contains(path + " = \"-4\"") && Contains(">= 1"));
  }
  CHECK_THAT(parse_error(render(with(base_doc(), "scale_out.oversubscription", "0.5"))),
             Contains("scale_out.oversubscription = \"0.5\"") && Contains(">= 1"));
  CHECK_THAT(parse_error(render(
                 with(with(base_doc(), "scale_out.topology", "rail_optimized"), "scale_out.oversubscription", "2"))),
             Contains("scale_out.oversubscription = \"2\"") && Contains("rail_optimized"));
  CHECK_THAT(parse_error(render(with(base_doc(), "nodes", "200000"))),
             Contains("nodes = \"200000\"") && Contains("1600000") && Contains(std::to_string(kMaxClusterGpus)));
  CHECK_THAT(parse_error(render(with(with(base_doc(), "nodes", "1"), "gpus_per_node", "2000000"))),
             Contains("gpus_per_node = \"2000000\"") && Contains(std::to_string(kMaxClusterGpus)));
  CHECK(parse(with(with(base_doc(), "nodes", "131072"), "gpus_per_node", "8")).total_gpus() == kMaxClusterGpus);
  CHECK_THAT(parse_error(render(with(base_doc(), "name", "\"\""))), Contains("name = \"\"") && Contains("non-empty"));
  CHECK_THAT(parse_error(render(with(base_doc(), "gpu.name", "''"))),
             Contains("gpu.name = \"\"") && Contains("non-empty"));
  CHECK_THAT(parse_error(render(with(base_doc(), "scale_up.kind", "nvl72"))),
             Contains("scale_up.kind = \"nvl72\"") && Contains("nvswitch"));
  // The line of the offending key: nodes is on line 2 of the rendered document.
  CHECK_THAT(parse_error(render(with(base_doc(), "nodes", "0"))), StartsWith("test.yaml: line 2: nodes"));
}

TEST_CASE("bad input: documents that are not one cluster mapping", "[cluster]") {
  CHECK_THAT(parse_error(""), StartsWith("test.yaml") && Contains("no YAML document"));
  CHECK_THAT(parse_error("# only a comment\n"), StartsWith("test.yaml"));
  CHECK_THAT(parse_error("42\n"), Contains("top level is \"42\""));
  CHECK_THAT(parse_error("- a\n- b\n"), Contains("top level is a sequence"));
  CHECK_THAT(parse_error("~\n"), Contains("top level is null"));
  CHECK_THAT(parse_error(render(base_doc()) + "---\n" + render(base_doc())), Contains("more than one YAML document"));
  CHECK_THAT(parse_error(render(base_doc()) + "nodes: 3\n"), Contains("'nodes' is given twice"));
  CHECK_THAT(parse_error("? [a, b]\n: 1\n"), Contains("keys must be plain names"));
  CHECK_THAT(parse_error("gpu: &a [*a]\n"), StartsWith("test.yaml"));
  // yaml-cpp 0.7's YAML::LoadAll never returns on these (jbeder/yaml-cpp#1040); the parser must.
  for (const std::string& text :
       std::vector<std::string>{",", ", a\n", "- a\n,\n", "[a]\n,\n", render(base_doc()) + "...\n,\n"}) {
    INFO(text);
    CHECK_THAT(parse_error(text), StartsWith("test.yaml"));
  }
  Doc aliased = without(base_doc(), "scale_up");
  aliased.emplace_back("scale_up", "*g");
  std::string text = render(aliased);
  text.replace(text.find("gpu:\n"), 5, "gpu: &g\n");
  CHECK_THAT(parse_error(text), Contains("unknown key \"scale_up.name\""));
}

TEST_CASE("bad input: malformed YAML is a paratwin::Error naming the file", "[cluster]") {
  for (const std::string text :
       {"name: [unclosed\n", "name: {a: 1\n", "a: b: c\n", "name: \"open\n", "\tname: x\n", "- a\nb: 1\n",
        "name: x\n  nodes: 1\n", "&a\n", "*unknown\n", "!<!> x\n", "{\n", "]\n", "name: '\n"}) {
    INFO(text);
    CHECK_THAT(parse_error(text), StartsWith("test.yaml"));
  }
  CHECK_THAT(parse_error("name: [unclosed\n"), Contains("malformed YAML") && Contains("line"));
  // Deep nesting stops at yaml-cpp's depth guard instead of overflowing the stack.
  CHECK_THAT(parse_error("gpu: " + std::string(5000, '[')), StartsWith("test.yaml") && Contains("nested more than"));
  std::string deep_blocks;
  for (int i = 0; i < 3000; ++i) deep_blocks += "- ";
  CHECK_THAT(parse_error(deep_blocks + "x\n"), StartsWith("test.yaml") && Contains("nested more than"));
}

TEST_CASE("validate_cluster applies the parser's rules to clusters built in code", "[cluster]") {
  CHECK_NOTHROW(validate_cluster(base_cluster()));
  Cluster c = base_cluster();
  c.scale_out.nic_bandwidth_bytes_per_s = -1;
  CHECK_THROWS_WITH(validate_cluster(c), Contains("test-cluster") &&
                                             Contains("scale_out.nic_bandwidth_bytes_per_s = -1") && Contains("> 0"));
  c = base_cluster();
  c.gpu.memory_bytes = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(validate_cluster(c), Contains("gpu.memory_bytes = nan") && Contains("finite"));
  c = base_cluster();
  c.scale_out.oversubscription = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(validate_cluster(c), Contains("scale_out.oversubscription = inf"));
  c = base_cluster();
  c.nodes = 1 << 20;
  CHECK_THROWS_WITH(validate_cluster(c), Contains("nodes = 1048576") && Contains("exceeds"));
  c = base_cluster();
  c.scale_up.latency_s = -1e-9;
  CHECK_THROWS_AS(validate_cluster(c), Error);
  CHECK(to_string(ScaleOutTopology::kFatTree) == "fat_tree");
  CHECK(to_string(ScaleOutTopology::kRailOptimized) == "rail_optimized");
}

/// One random edit of a YAML text: byte noise, YAML punctuation, line surgery or a key's value replaced.
std::string mutate(std::string text, std::mt19937& rng) {
  static const std::vector<std::string> tokens = {":",
                                                  ": ",
                                                  "- ",
                                                  "[",
                                                  "]",
                                                  "{",
                                                  "}",
                                                  ",",
                                                  "&a ",
                                                  "*a",
                                                  "!!str ",
                                                  "!!int ",
                                                  "? ",
                                                  "---\n",
                                                  "...\n",
                                                  "#",
                                                  "\"",
                                                  "'",
                                                  "\t",
                                                  "\n",
                                                  "  ",
                                                  "|\n",
                                                  ">\n",
                                                  "%YAML 1.2\n",
                                                  "~",
                                                  "null",
                                                  "1e999",
                                                  "nan",
                                                  ".inf",
                                                  "-0",
                                                  "0x1f",
                                                  "true",
                                                  "1e-400",
                                                  "\xff",
                                                  "\xef\xbb\xbf",
                                                  std::string(1, '\0'),
                                                  "\\",
                                                  "\\x",
                                                  "<<: *a\n",
                                                  "&a [*a]",
                                                  "nodes: 1\n",
                                                  "gpu:\n"};
  static const std::vector<std::string> values = {
      "0",      "-1",         "1",       "8",   "1e9", "-1e9",     "1e300",
      "1e-300", "2147483648", "1048577", "0.5", "2",   "fat_tree", "rail_optimized",
      "true",   "false",      "\"\"",    "[]",  "{}",  "~",        "nvswitch",
      "x",      "1.5",        "65536",   "16"};
  const auto below = [&](std::size_t n) {
    return n == 0 ? std::size_t{0} : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  switch (below(8)) {
    case 0:  // overwrite a byte with any byte
      if (!text.empty()) text[below(text.size())] = static_cast<char>(below(256));
      break;
    case 1: {  // delete a range
      const std::size_t at = below(text.size() + 1);
      text.erase(at, below(40));
      break;
    }
    case 2:  // insert a YAML token
      text.insert(below(text.size() + 1), tokens[below(tokens.size())]);
      break;
    case 3: {  // duplicate a line
      const std::size_t at = below(text.size() + 1);
      const std::size_t begin = text.rfind('\n', at == 0 ? 0 : at - 1);
      const std::size_t from = begin == std::string::npos ? 0 : begin + 1;
      const std::size_t end = std::min(text.find('\n', from), text.size());
      text.insert(from, text.substr(from, end - from) + "\n");
      break;
    }
    case 4:  // truncate
      text.resize(below(text.size() + 1));
      break;
    case 5: {  // change the indentation of a line
      const std::size_t nl = text.find('\n', below(text.size() + 1));
      if (nl != std::string::npos) text.insert(nl + 1, std::string(below(5), ' '));
      break;
    }
    default: {  // replace the value of a random key
      const std::size_t colon = text.find(": ", below(text.size() + 1));
      if (colon == std::string::npos) break;
      const std::size_t end = std::min(text.find_first_of("#\n", colon + 2), text.size());
      text.replace(colon + 2, end - colon - 2, values[below(values.size())] + " ");
      break;
    }
  }
  return text;
}

TEST_CASE("fuzz: mutated cluster files end in a Cluster or a paratwin::Error", "[cluster][fuzz]") {
  std::vector<std::string> seeds = {render(base_doc()), cluster_to_yaml(base_cluster())};
  for (const std::string& name : cluster_preset_names()) seeds.push_back(cluster_preset_yaml(name));
  std::mt19937 rng(1234567);
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string text = seeds[static_cast<std::size_t>(i) % seeds.size()];
    const int edits = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int e = 0; e < edits; ++e) text = mutate(std::move(text), rng);
    try {
      const Cluster cluster = parse_cluster_yaml(text, "fuzz.yaml");
      ++accepted;
      // What the parser accepts obeys the rules and survives a round trip.
      validate_cluster(cluster);
      if (cluster.name.find('\0') == std::string::npos && cluster.gpu.name.find('\0') == std::string::npos) {
        CHECK(parse_cluster_yaml(cluster_to_yaml(cluster), "fuzz-round-trip.yaml") == cluster);
      }
    } catch (const Error& e) {
      ++rejected;
      const std::string message = e.what();
      if (message.rfind("fuzz", 0) != 0) FAIL("message does not name the file: " << message << "\ninput:\n" << text);
    } catch (const std::exception& e) {
      FAIL("iteration " << i << ": " << e.what() << "\ninput:\n" << text);
    } catch (...) {
      FAIL("iteration " << i << ": unknown exception\ninput:\n" << text);
    }
  }
  // Both outcomes are exercised.
  CHECK(accepted > 100);
  CHECK(rejected > 100);
}

TEST_CASE("fuzz: random key/value documents end in a Cluster or a paratwin::Error", "[cluster][fuzz]") {
  std::mt19937 rng(42);
  const Doc base = base_doc();
  const std::vector<std::string> junk = {"0",        "-5",    "1e9",   "x", "[1]", "{a: 1}", "",  "true",
                                         "fat_tree", "1e400", "\"q\"", "~", "3.5", "8",      "2", "nvswitch"};
  int rejected = 0;
  for (int i = 0; i < 500; ++i) {
    Doc doc;
    for (const auto& entry : base) {
      const int roll = std::uniform_int_distribution<int>(0, 9)(rng);
      if (roll == 0) continue;  // drop the key
      if (roll == 1) {
        doc.emplace_back(entry.first, junk[std::uniform_int_distribution<std::size_t>(0, junk.size() - 1)(rng)]);
      } else {
        doc.push_back(entry);
      }
    }
    std::shuffle(doc.begin(), doc.end(), rng);
    try {
      (void)parse_cluster_yaml(render(doc), "random.yaml");
    } catch (const Error& e) {
      ++rejected;
      CHECK_THAT(std::string(e.what()), StartsWith("random.yaml"));
    } catch (...) {
      FAIL("not a paratwin::Error for:\n" << render(doc));
    }
  }
  CHECK(rejected > 0);
}

}  // namespace
}  // namespace paratwin
