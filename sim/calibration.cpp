// Built-in constants and the calibration file parser. Every default is a published number; docs/sim.md lists the
// sources. The YAML format is strict: unknown keys and wrong types are errors naming the key path.

#include "sim/calibration.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <span>
#include <sstream>

#include "topology/error.hpp"
#include "traces/calibration_fit.hpp"

namespace paratwin {
namespace {

constexpr std::array<std::string_view, kNcclAlgoCount> kAlgoKeys = {"tree", "ring", "nvls", "pat"};
constexpr std::array<std::string_view, kNcclProtoCount> kProtoKeys = {"ll", "ll128", "simple"};
constexpr std::array<std::string_view, kNcclHwCount> kHwKeys = {"nvlink", "pci", "net"};
constexpr std::array<std::string_view, 3> kNodeClassKeys = {"one_node", "two_nodes", "more_nodes"};
// Same order as ComputeKind; also the YAML keys under compute.kernels.
constexpr std::array<std::string_view, kComputeKindCount> kKernelKeys = {
    "embedding",   "rms_norm",         "gemm",          "grouped_gemm", "rope",
    "attention",   "sparse_attention", "indexer_score", "top_k",        "moe_route",
    "moe_permute", "moe_unpermute",    "activation",    "residual_add", "kv_reorder",
    "add_rms_norm"};

EfficiencyCurve curve(std::initializer_list<std::pair<double, double>> points) {
  return EfficiencyCurve{points};
}

// ---- YAML helpers -------------------------------------------------------------------------------------------------

struct Ctx {
  std::string source;
};

void check_map(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  if (!node.IsMap()) fail("calibration {}: '{}' must be a mapping", ctx.source, path);
}

void check_keys(const YAML::Node& node, const std::string& path, std::span<const std::string_view> allowed,
                const Ctx& ctx) {
  check_map(node, path, ctx);
  for (const auto& item : node) {
    const auto key = item.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (const auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail("calibration {}: unknown key '{}{}{}' (allowed here: {})", ctx.source, path, path.empty() ? "" : ".", key,
           list);
    }
  }
}

void check_keys(const YAML::Node& node, const std::string& path, std::initializer_list<std::string_view> allowed,
                const Ctx& ctx) {
  check_keys(node, path, std::span<const std::string_view>(allowed.begin(), allowed.size()), ctx);
}

double as_double(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  if (!node.IsScalar()) fail("calibration {}: '{}' must be a number", ctx.source, path);
  try {
    const double value = node.as<double>();
    if (!std::isfinite(value)) fail("calibration {}: '{}' must be finite", ctx.source, path);
    return value;
  } catch (const YAML::Exception&) {
    fail("calibration {}: '{}' must be a number, got '{}'", ctx.source, path, node.Scalar());
  }
}

double as_non_negative(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  const double value = as_double(node, path, ctx);
  if (value < 0) fail("calibration {}: '{}' = {} must be ≥ 0", ctx.source, path, value);
  return value;
}

double as_positive(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  const double value = as_double(node, path, ctx);
  if (!(value > 0)) fail("calibration {}: '{}' = {} must be > 0", ctx.source, path, value);
  return value;
}

bool as_bool(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  try {
    return node.as<bool>();
  } catch (const YAML::Exception&) {
    fail("calibration {}: '{}' must be true or false", ctx.source, path);
  }
}

int as_positive_int(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  const double value = as_positive(node, path, ctx);
  if (value != std::floor(value) || value > 1024) {
    fail("calibration {}: '{}' = {} must be an integer in [1, 1024]", ctx.source, path, value);
  }
  return static_cast<int>(value);
}

void apply_algo_proto(const YAML::Node& node, const std::string& path, AlgoProtoTable& table, const Ctx& ctx) {
  check_keys(node, path, kAlgoKeys, ctx);
  for (std::size_t a = 0; a < kAlgoKeys.size(); ++a) {
    const YAML::Node algo = node[std::string(kAlgoKeys[a])];
    if (!algo) continue;
    const std::string algo_path = path + "." + std::string(kAlgoKeys[a]);
    check_keys(algo, algo_path, kProtoKeys, ctx);
    for (std::size_t p = 0; p < kProtoKeys.size(); ++p) {
      const YAML::Node value = algo[std::string(kProtoKeys[p])];
      if (value) table[a][p] = as_non_negative(value, algo_path + "." + std::string(kProtoKeys[p]), ctx);
    }
  }
}

void apply_node_class(const YAML::Node& node, const std::string& path, NodeClassTable& table, const Ctx& ctx) {
  check_keys(node, path, kNodeClassKeys, ctx);
  for (std::size_t i = 0; i < kNodeClassKeys.size(); ++i) {
    const YAML::Node value = node[std::string(kNodeClassKeys[i])];
    if (value) table[i] = as_positive(value, path + "." + std::string(kNodeClassKeys[i]), ctx);
  }
}

EfficiencyCurve parse_curve(const YAML::Node& node, const std::string& path, const Ctx& ctx) {
  if (!node.IsSequence() || node.size() == 0) {
    fail("calibration {}: '{}' must be a non-empty list of [size, efficiency] pairs", ctx.source, path);
  }
  EfficiencyCurve out;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string item_path = fmt::format("{}[{}]", path, i);
    const YAML::Node pair = node[i];
    if (!pair.IsSequence() || pair.size() != 2)
      fail("calibration {}: '{}' must be [size, efficiency]", ctx.source, item_path);
    const double size = as_positive(pair[0], item_path + "[0]", ctx);
    const double value = as_positive(pair[1], item_path + "[1]", ctx);
    if (value > 1.0) fail("calibration {}: '{}' efficiency {} must be in (0, 1]", ctx.source, item_path, value);
    if (!out.points.empty() && size <= out.points.back().first) {
      fail("calibration {}: '{}' sizes must increase strictly ({} after {})", ctx.source, item_path, size,
           out.points.back().first);
    }
    out.points.emplace_back(size, value);
  }
  return out;
}

void apply_nccl(const YAML::Node& node, NcclParams& nccl, const Ctx& ctx) {
  check_keys(
      node, "nccl",
      {"base_latency_us", "hw_latency_us", "ll_max_bw_gb_per_s", "per_channel_max_ring_ll128_gb_per_s",
       "per_channel_max_tree_ll128_gb_per_s", "per_channel_max_tree_gb_per_s", "nvls_efficiency", "net_overhead_us",
       "latency_inter_us", "ring_simple_plateau_factor", "tree_correction_factor", "channels", "nvlink_graph_fraction",
       "tree_graph_fraction", "net_graph_fraction", "p2p_ll_threshold_bytes", "ll128", "pat"},
      ctx);
  if (const auto n = node["base_latency_us"]) apply_algo_proto(n, "nccl.base_latency_us", nccl.base_latency_us, ctx);
  if (const auto n = node["hw_latency_us"]) {
    check_keys(n, "nccl.hw_latency_us", kHwKeys, ctx);
    for (std::size_t h = 0; h < kHwKeys.size(); ++h) {
      if (const auto hw = n[std::string(kHwKeys[h])]) {
        apply_algo_proto(hw, "nccl.hw_latency_us." + std::string(kHwKeys[h]), nccl.hw_latency_us[h], ctx);
      }
    }
  }
  if (const auto n = node["ll_max_bw_gb_per_s"]) {
    NodeClassTable table = {nccl.ll_max_bw_single_node_gb_per_s, nccl.ll_max_bw_multi_node_gb_per_s[0],
                            nccl.ll_max_bw_multi_node_gb_per_s[1]};
    apply_node_class(n, "nccl.ll_max_bw_gb_per_s", table, ctx);
    nccl.ll_max_bw_single_node_gb_per_s = table[0];
    nccl.ll_max_bw_multi_node_gb_per_s = {table[1], table[2]};
  }
  if (const auto n = node["per_channel_max_ring_ll128_gb_per_s"]) {
    apply_node_class(n, "nccl.per_channel_max_ring_ll128_gb_per_s", nccl.per_channel_max_ring_ll128_gb_per_s, ctx);
  }
  if (const auto n = node["per_channel_max_tree_ll128_gb_per_s"]) {
    apply_node_class(n, "nccl.per_channel_max_tree_ll128_gb_per_s", nccl.per_channel_max_tree_ll128_gb_per_s, ctx);
  }
  if (const auto n = node["per_channel_max_tree_gb_per_s"]) {
    apply_node_class(n, "nccl.per_channel_max_tree_gb_per_s", nccl.per_channel_max_tree_gb_per_s, ctx);
  }
  if (const auto n = node["nvls_efficiency"]) nccl.nvls_efficiency = as_positive(n, "nccl.nvls_efficiency", ctx);
  if (const auto n = node["net_overhead_us"]) nccl.net_overhead_us = as_non_negative(n, "nccl.net_overhead_us", ctx);
  if (const auto n = node["latency_inter_us"]) nccl.latency_inter_us = as_non_negative(n, "nccl.latency_inter_us", ctx);
  if (const auto n = node["ring_simple_plateau_factor"]) {
    nccl.ring_simple_plateau_factor = as_positive(n, "nccl.ring_simple_plateau_factor", ctx);
  }
  if (const auto n = node["tree_correction_factor"]) {
    check_keys(n, "nccl.tree_correction_factor", kProtoKeys, ctx);
    for (std::size_t p = 0; p < kProtoKeys.size(); ++p) {
      const auto list = n[std::string(kProtoKeys[p])];
      if (!list) continue;
      const std::string path = "nccl.tree_correction_factor." + std::string(kProtoKeys[p]);
      if (!list.IsSequence() || list.size() != 23)
        fail("calibration {}: '{}' must be a list of 23 numbers", ctx.source, path);
      for (std::size_t i = 0; i < 23; ++i) {
        nccl.tree_correction_factor[p][i] = as_positive(list[i], fmt::format("{}[{}]", path, i), ctx);
      }
    }
  }
  if (const auto n = node["channels"]) {
    check_keys(n, "nccl.channels", {"ring", "tree", "nvls"}, ctx);
    if (const auto v = n["ring"]) nccl.ring_channels = as_positive_int(v, "nccl.channels.ring", ctx);
    if (const auto v = n["tree"]) nccl.tree_channels = as_positive_int(v, "nccl.channels.tree", ctx);
    if (const auto v = n["nvls"]) nccl.nvls_channels = as_positive_int(v, "nccl.channels.nvls", ctx);
  }
  if (const auto n = node["nvlink_graph_fraction"]) {
    nccl.nvlink_graph_fraction = as_positive(n, "nccl.nvlink_graph_fraction", ctx);
  }
  if (const auto n = node["tree_graph_fraction"])
    nccl.tree_graph_fraction = as_positive(n, "nccl.tree_graph_fraction", ctx);
  if (const auto n = node["net_graph_fraction"])
    nccl.net_graph_fraction = as_positive(n, "nccl.net_graph_fraction", ctx);
  if (const auto n = node["p2p_ll_threshold_bytes"]) {
    nccl.p2p_ll_threshold_bytes = static_cast<std::int64_t>(as_non_negative(n, "nccl.p2p_ll_threshold_bytes", ctx));
  }
  if (const auto n = node["ll128"]) nccl.ll128_enabled = as_bool(n, "nccl.ll128", ctx);
  if (const auto n = node["pat"]) nccl.pat_enabled = as_bool(n, "nccl.pat", ctx);
}

void apply_link_class(const YAML::Node& node, const std::string& path, LinkClassParams& link, const Ctx& ctx) {
  check_keys(node, path, {"latency_us", "bandwidth_gb_per_s"}, ctx);
  if (const auto n = node["latency_us"]) link.latency_s = as_non_negative(n, path + ".latency_us", ctx) * 1e-6;
  if (const auto n = node["bandwidth_gb_per_s"]) {
    link.bandwidth_bytes_per_s = as_positive(n, path + ".bandwidth_gb_per_s", ctx) * 1e9;
  }
}

void apply_compute(const YAML::Node& node, ComputeParams& compute, const Ctx& ctx) {
  check_keys(node, "compute", {"launch_overhead_us", "kernels"}, ctx);
  if (const auto n = node["launch_overhead_us"]) {
    compute.launch_overhead_s = as_non_negative(n, "compute.launch_overhead_us", ctx) * 1e-6;
  }
  if (const auto kernels = node["kernels"]) {
    check_keys(kernels, "compute.kernels", kKernelKeys, ctx);
    for (std::size_t k = 0; k < kKernelKeys.size(); ++k) {
      const auto kernel = kernels[std::string(kKernelKeys[k])];
      if (!kernel) continue;
      const std::string path = "compute.kernels." + std::string(kKernelKeys[k]);
      check_keys(kernel, path,
                 {"compute_efficiency", "causal_compute_efficiency", "fp8_compute_efficiency",
                  "fp8_causal_compute_efficiency", "memory_efficiency", "latency_us"},
                 ctx);
      KernelParams& params = compute.kernels[k];
      if (const auto n = kernel["latency_us"]) params.latency_s = as_non_negative(n, path + ".latency_us", ctx) * 1e-6;
      if (const auto c = kernel["compute_efficiency"])
        params.compute_efficiency = parse_curve(c, path + ".compute_efficiency", ctx);
      if (const auto c = kernel["causal_compute_efficiency"]) {
        params.causal_compute_efficiency = parse_curve(c, path + ".causal_compute_efficiency", ctx);
      }
      if (const auto c = kernel["fp8_compute_efficiency"]) {
        params.fp8_compute_efficiency = parse_curve(c, path + ".fp8_compute_efficiency", ctx);
      }
      if (const auto c = kernel["fp8_causal_compute_efficiency"]) {
        params.fp8_causal_compute_efficiency = parse_curve(c, path + ".fp8_causal_compute_efficiency", ctx);
      }
      if (const auto c = kernel["memory_efficiency"])
        params.memory_efficiency = parse_curve(c, path + ".memory_efficiency", ctx);
    }
  }
}

}  // namespace

std::string_view to_string(NcclAlgo algo) {
  return kAlgoKeys[static_cast<std::size_t>(algo)];
}
std::string_view to_string(NcclProto proto) {
  return kProtoKeys[static_cast<std::size_t>(proto)];
}
std::string_view to_string(NcclHw hw) {
  return kHwKeys[static_cast<std::size_t>(hw)];
}
std::string_view calibration_kernel_key(ComputeKind kind) {
  return kKernelKeys[static_cast<std::size_t>(kind)];
}

double EfficiencyCurve::at(double size) const {
  return curve_at(points, size);  // one reading rule for the simulator and `paratwin calibrate`
}

const EfficiencyCurve& KernelParams::compute_curve(DType dtype, bool causal) const {
  const auto have = [](const EfficiencyCurve& c) { return !c.points.empty(); };
  if (dtype == DType::kFp8) {
    if (causal && have(fp8_causal_compute_efficiency)) return fp8_causal_compute_efficiency;
    if (have(fp8_compute_efficiency)) return fp8_compute_efficiency;
  }
  if (causal && have(causal_compute_efficiency)) return causal_compute_efficiency;
  return compute_efficiency;
}

Calibration default_calibration() {
  Calibration cal;
  NcclParams& n = cal.nccl;
  constexpr auto kTree = static_cast<std::size_t>(NcclAlgo::kTree);
  constexpr auto kRing = static_cast<std::size_t>(NcclAlgo::kRing);
  constexpr auto kNvls = static_cast<std::size_t>(NcclAlgo::kNvls);
  constexpr auto kPat = static_cast<std::size_t>(NcclAlgo::kPat);
  constexpr auto kNvlink = static_cast<std::size_t>(NcclHw::kNvlink);
  constexpr auto kPci = static_cast<std::size_t>(NcclHw::kPci);
  constexpr auto kNet = static_cast<std::size_t>(NcclHw::kNet);
  // NCCL v2.28.9-1 src/graph/tuning.cc, ncclTunerConstantsDefaults (LL, LL128, Simple).
  n.base_latency_us[kTree] = {6.8, 14.0, 8.4};
  n.base_latency_us[kRing] = {6.6, 14.0, 8.4};
  n.base_latency_us[kNvls] = {0, 0, 0};
  n.base_latency_us[kPat] = {8.0, 8.0, 8.0};
  n.hw_latency_us[kNvlink][kTree] = {0.6, 1.25, 4.0};
  n.hw_latency_us[kNvlink][kRing] = {0.6, 1.9, 3.4};
  n.hw_latency_us[kNvlink][kNvls] = {0, 0, 25};
  n.hw_latency_us[kNvlink][kPat] = {0, 0, 4.0};
  n.hw_latency_us[kPci][kTree] = {1.0, 1.9, 4.0};
  n.hw_latency_us[kPci][kRing] = {1.0, 2.5, 5.7};
  n.hw_latency_us[kPci][kNvls] = {0, 0, 0};
  n.hw_latency_us[kPci][kPat] = {0, 0, 4.0};
  n.hw_latency_us[kNet][kTree] = {5.0, 8.5, 14};
  n.hw_latency_us[kNet][kRing] = {2.7, 4.0, 14.0};
  n.hw_latency_us[kNet][kNvls] = {0, 0, 18};
  n.hw_latency_us[kNet][kPat] = {0, 0, 14};
  n.ll_max_bw_single_node_gb_per_s = 141.0;        // llMaxBws[Hopper][N1]
  n.ll_max_bw_multi_node_gb_per_s = {39.0, 20.4};  // llMaxBws[Intel row][N2, N4]
  n.per_channel_max_ring_ll128_gb_per_s = {36.7, 36.7, 36.7};
  n.per_channel_max_tree_ll128_gb_per_s = {36.7, 36.7, 29.0};
  n.per_channel_max_tree_gb_per_s = {38.7, 41.4, 36.0};
  n.nvls_efficiency = 0.85;
  n.net_overhead_us = 1.0;             // x86 Intel
  n.latency_inter_us = 0.0;            // graph->latencyInter of an InfiniBand graph
  n.ring_simple_plateau_factor = 1.4;  // compute capability ≥ 80
  n.tree_correction_factor[0] = {1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7,  .7,  .7,  .6, .5,
                                 .4,  .4,  .5,  .6,  .7, .8, .9, 1.0, 1.0, 1.0, 1.0};
  n.tree_correction_factor[1] = {1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7,  .6, .6,
                                 .6,  .6,  .6,  .6,  .8,  .9, .9, .9, .9, 1.0, 1.0};
  n.tree_correction_factor[2] = {.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5,
                                 .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9};
  // Graph numbers from NCCL 2.28.3's TUNING table on the project's 2×H200 machine (hardware-reference.md §9):
  // Ring: 24 channels, busBw 360 GB/s = 0.8 × the 450 GB/s NVLink line rate. Tree: every Tree cell (LL 61.1,
  // LL128 180.6, Simple 232.2) follows from 12 channels (12 × perChMaxTreeBw 38.7 = 464.4 binds) with a graph of
  // ≥ 504.8 GB/s; 12 × 50 GB/s (sm90SpeedArrayIntra) = 600 GB/s is used.
  n.ring_channels = 24;
  n.tree_channels = 12;
  n.nvls_channels = 16;  // NCCL_NVLS_NCHANNELS default
  n.nvlink_graph_fraction = 0.8;
  n.tree_graph_fraction = 600.0 / 450.0;
  n.net_graph_fraction = 48.0 / 50.0;  // sm90SpeedArrayInter[0] = 48 GB/s per channel on a 50 GB/s NDR NIC
  n.p2p_ll_threshold_bytes = 16384;
  n.ll128_enabled = true;
  n.pat_enabled = true;

  ComputeParams& c = cal.compute;
  // NVIDIA "Getting Started with CUDA Graphs": back-to-back 2.9 µs kernels run at 3.8 µs each → ~0.9 µs gap.
  c.launch_overhead_s = 0.9e-6;
  // HBM efficiency of streaming kernels: H100 D2D copy 2903 of 3350 GB/s (Voltage Park benchmark).
  const EfficiencyCurve streaming = curve({{1, 2903.0 / 3350.0}});
  // FlashMLA dense decode: 3000 of 3350 GB/s on H800.
  const EfficiencyCurve attention_memory = curve({{1, 3000.0 / 3350.0}});
  // Memory-bound kinds run on CUDA cores far below the ridge point; their FLOPs never bind.
  const EfficiencyCurve unit = curve({{1, 1.0}});
  // GEMM by M (rows): DeepGEMM FP8 H800 (M=64: 336, M=128: 645, M=4096: 1426 of 1979 TFLOPs),
  // cuBLAS BF16 8192³ on H100: 797.8 of 989.4 TFLOPs.
  const EfficiencyCurve gemm =
      curve({{64, 336.0 / 1979.0}, {128, 645.0 / 1979.0}, {4096, 1426.0 / 1979.0}, {8192, 797.8 / 989.4}});
  for (std::size_t k = 0; k < kComputeKindCount; ++k) {
    c.kernels[k].compute_efficiency = unit;
    c.kernels[k].memory_efficiency = streaming;
  }
  c.of(ComputeKind::kGemm).compute_efficiency = gemm;
  // Indexer logits are an FP8 MQA GEMM (DeepGEMM fp8_mqa_logits): read on the GEMM curve at M = q_tokens.
  c.of(ComputeKind::kIndexerScore).compute_efficiency = gemm;
  // Grouped GEMM by mean rows per expert: DeepGEMM masked 815–1233, contiguous up to 1346 of 1979 TFLOPs.
  c.of(ComputeKind::kGroupedGemm).compute_efficiency =
      curve({{64, 815.0 / 1979.0}, {256, 1233.0 / 1979.0}, {4096, 1346.0 / 1979.0}});
  // FlashAttention-3 BF16 forward, head dim 128, H100 SXM5 (arXiv 2407.08608 Fig. 5), by sequence length.
  KernelParams& attention = c.of(ComputeKind::kAttention);
  attention.compute_efficiency = curve({{512, 467 / 989.4},
                                        {1024, 565 / 989.4},
                                        {2048, 625 / 989.4},
                                        {4096, 638 / 989.4},
                                        {8192, 646 / 989.4},
                                        {16384, 648 / 989.4}});
  attention.causal_compute_efficiency = curve({{512, 292 / 989.4},
                                               {1024, 423 / 989.4},
                                               {2048, 521 / 989.4},
                                               {4096, 579 / 989.4},
                                               {8192, 602 / 989.4},
                                               {16384, 616 / 989.4}});
  attention.memory_efficiency = attention_memory;
  // FlashMLA DSA sparse attention on H800: prefill 640, decode 410 of 990 TFLOPs (by q_tokens: decode ≤ 2 queries).
  KernelParams& sparse = c.of(ComputeKind::kSparseAttention);
  sparse.compute_efficiency = curve({{2, 410.0 / 990.0}, {128, 640.0 / 990.0}});
  sparse.memory_efficiency = attention_memory;
  c.of(ComputeKind::kIndexerScore).memory_efficiency = attention_memory;
  return cal;
}

const CollectiveCurve* Calibration::curve_for(std::string_view kind, int ranks) const {
  for (const auto& c : collectives) {
    if (c.kind == kind && c.ranks == ranks) return &c;
  }
  return nullptr;
}

namespace {

// collectives: [{kind: all_gather, ranks: 2, time_us: [[bytes, us], ...]}, ...]; a later entry of the same shape
// replaces an earlier one (so a file can override another's curve).
void apply_collectives(const YAML::Node& node, std::vector<CollectiveCurve>& curves, const Ctx& ctx) {
  if (!node.IsSequence()) fail("calibration {}: 'collectives' must be a list of curves", ctx.source);
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string path = fmt::format("collectives[{}]", i);
    const YAML::Node item = node[i];
    check_keys(item, path, {"kind", "ranks", "time_us"}, ctx);
    if (!item["kind"] || !item["ranks"] || !item["time_us"]) {
      fail("calibration {}: '{}' needs kind, ranks and time_us", ctx.source, path);
    }
    CollectiveCurve curve;
    curve.kind = item["kind"].Scalar();
    static constexpr std::array<std::string_view, 6> kKinds = {"all_gather", "reduce_scatter", "all_reduce",
                                                               "all_to_all", "broadcast",      "send"};
    if (std::find(kKinds.begin(), kKinds.end(), curve.kind) == kKinds.end()) {
      fail(
          "calibration {}: '{}.kind' = '{}' is not a collective kind (all_gather, reduce_scatter, all_reduce, "
          "all_to_all, broadcast, send)",
          ctx.source, path, curve.kind);
    }
    curve.ranks = as_positive_int(item["ranks"], path + ".ranks", ctx);
    if (curve.ranks < 2) fail("calibration {}: '{}.ranks' must be at least 2", ctx.source, path);
    const YAML::Node points = item["time_us"];
    if (!points.IsSequence() || points.size() == 0) {
      fail("calibration {}: '{}.time_us' must be a non-empty list of [bytes, microseconds] pairs", ctx.source, path);
    }
    for (std::size_t k = 0; k < points.size(); ++k) {
      const std::string point_path = fmt::format("{}.time_us[{}]", path, k);
      const YAML::Node pair = points[k];
      if (!pair.IsSequence() || pair.size() != 2) {
        fail("calibration {}: '{}' must be [bytes, microseconds]", ctx.source, point_path);
      }
      const double bytes = as_positive(pair[0], point_path + "[0]", ctx);
      const double us = as_positive(pair[1], point_path + "[1]", ctx);
      if (!curve.points.empty() && bytes <= curve.points.back().first) {
        fail("calibration {}: '{}' sizes must increase strictly ({} after {})", ctx.source, point_path, bytes,
             curve.points.back().first);
      }
      curve.points.emplace_back(bytes, us * 1e-6);
    }
    std::erase_if(curves, [&](const CollectiveCurve& c) { return c.kind == curve.kind && c.ranks == curve.ranks; });
    curves.push_back(std::move(curve));
  }
}

}  // namespace

Calibration apply_calibration_yaml(Calibration base, std::string_view yaml_text, std::string_view source) {
  const Ctx ctx{std::string(source)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& error) {
    fail("calibration {}: not valid YAML: {}", source, error.what());
  }
  base.source = std::string(source);
  if (root.IsNull()) return base;
  check_keys(root, "", {"nccl", "links", "compute", "collectives"}, ctx);
  if (const auto n = root["nccl"]) apply_nccl(n, base.nccl, ctx);
  if (const auto n = root["links"]) {
    check_keys(n, "links", {"nvlink", "network"}, ctx);
    if (const auto l = n["nvlink"]) apply_link_class(l, "links.nvlink", base.nvlink, ctx);
    if (const auto l = n["network"]) apply_link_class(l, "links.network", base.network, ctx);
  }
  if (const auto n = root["compute"]) apply_compute(n, base.compute, ctx);
  if (const auto n = root["collectives"]) apply_collectives(n, base.collectives, ctx);
  return base;
}

Calibration load_calibration_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read calibration file {}", path);
  std::ostringstream text;
  text << in.rdbuf();
  return apply_calibration_yaml(default_calibration(), text.str(), path);
}

}  // namespace paratwin
