#pragma once
/// The simulator's named constants: NCCL 2.28's tuning model (latencies, bandwidth refinements, channel caps), the
/// α-β of each link class, and the compute model's efficiency curves. `default_calibration()` holds the published
/// numbers (sources in docs/sim.md); a calibration file (YAML, format in docs/sim.md) overrides any subset of them.
/// Unknown keys, wrong types, and non-positive bandwidths or efficiencies are paratwin::Error naming the key.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/schedule.hpp"
#include "traces/collective_curve.hpp"

namespace paratwin {

/// NCCL algorithms the simulator models (NCCL's CollNet algorithms need a SHARP network and are not modelled;
/// NVLSTree is not modelled either, so multi-node all-reduce uses Ring or Tree).
enum class NcclAlgo : std::uint8_t { kTree, kRing, kNvls, kPat };
inline constexpr int kNcclAlgoCount = 4;
/// NCCL protocols, in NCCL's index order.
enum class NcclProto : std::uint8_t { kLl, kLl128, kSimple };
inline constexpr int kNcclProtoCount = 3;
/// NCCL's hardware latency classes (NCCL_HW_NVLINK, NCCL_HW_PCI, NCCL_HW_NET).
enum class NcclHw : std::uint8_t { kNvlink, kPci, kNet };
inline constexpr int kNcclHwCount = 3;

[[nodiscard]] std::string_view to_string(NcclAlgo algo);
[[nodiscard]] std::string_view to_string(NcclProto proto);
[[nodiscard]] std::string_view to_string(NcclHw hw);
/// The key of `kind` under compute.kernels in a calibration file ("top_k" for ComputeKind::kTopK, whose trace kind is
/// "topk"; the others equal the trace kind).
[[nodiscard]] std::string_view calibration_kernel_key(ComputeKind kind);

/// Number of ComputeKind enumerators.
inline constexpr std::size_t kComputeKindCount = 16;

/// A value per (algorithm, protocol).
using AlgoProtoTable = std::array<std::array<double, kNcclProtoCount>, kNcclAlgoCount>;
/// A value per node-count class, NCCL's index2: [0] one node, [1] two nodes, [2] three or more.
using NodeClassTable = std::array<double, 3>;

/// NCCL 2.28.9 tuning constants (src/graph/tuning.cc, Hopper rows) and the graph numbers NCCL's topology search
/// would find on the cluster (nChannels × per-channel bandwidth).
struct NcclParams {
  AlgoProtoTable base_latency_us{};                          ///< baseLatencies
  std::array<AlgoProtoTable, kNcclHwCount> hw_latency_us{};  ///< hwLatencies[hw][algo][proto]
  double ll_max_bw_single_node_gb_per_s = 0;                 ///< llMaxBws[Hopper][N1]
  std::array<double, 2> ll_max_bw_multi_node_gb_per_s{};     ///< llMaxBws[CPU row][N2, N4]
  NodeClassTable per_channel_max_ring_ll128_gb_per_s{};      ///< perChMaxRingLL128Bws[Hopper]
  NodeClassTable per_channel_max_tree_ll128_gb_per_s{};      ///< perChMaxTreeLL128Bws[Hopper]
  NodeClassTable per_channel_max_tree_gb_per_s{};            ///< perChMaxTreeBws[Hopper]
  double nvls_efficiency = 0;                                ///< nvlsEfficiency[Hopper]
  double net_overhead_us = 0;                                ///< getNetOverhead (x86 Intel)
  double latency_inter_us = 0;                               ///< graph->latencyInter
  double ring_simple_plateau_factor = 0;                     ///< multi-node Ring/Simple all-reduce latency ×
  std::array<std::array<double, 23>, kNcclProtoCount> tree_correction_factor{};  ///< treeCorrectionFactor
  int ring_channels = 0;                                                         ///< graphs[RING]->nChannels
  int tree_channels = 0;                                                         ///< graphs[TREE]->nChannels
  int nvls_channels = 0;                    ///< graphs[NVLS]->nChannels (NCCL_NVLS_NCHANNELS)
  double nvlink_graph_fraction = 0;         ///< Ring graph: nChannels × bwIntra as a fraction of the NVLink line rate
  double tree_graph_fraction = 0;           ///< Tree graph: nChannels × bwIntra as a fraction of the NVLink line rate
  double net_graph_fraction = 0;            ///< per-NIC nChannels × bwInter as a fraction of the NIC line rate
  std::int64_t p2p_ll_threshold_bytes = 0;  ///< NCCL_P2P_LL_THRESHOLD: LL for send/recv up to this size per peer
  bool ll128_enabled = true;                ///< LL128 enabled (NCCL default on Hopper over NVLink)
  bool pat_enabled = true;                  ///< PAT enabled (NCCL_PAT_ENABLE default: on when 1 GPU per node)
};

/// α-β of one link class of the SimGrid platform; unset fields take the cluster's numbers.
struct LinkClassParams {
  std::optional<double> latency_s;              ///< one hop (GPU to GPU through the switch / NIC to NIC)
  std::optional<double> bandwidth_bytes_per_s;  ///< per direction
};

/// A piecewise-linear curve in log2(size): points (size, value), sizes strictly increasing, clamped outside.
struct EfficiencyCurve {
  std::vector<std::pair<double, double>> points;
  [[nodiscard]] double at(double size) const;
};

/// Efficiencies of one compute kind. The size a curve is read at depends on the kind (docs/sim.md, "Compute").
/// fp8 ops have curves of their own: a kind's fp8 kernels (block-scaled GEMMs) reach a different fraction of the fp8
/// peak than its bf16 kernels of the bf16 peak, so one curve for both misprices one of them.
struct KernelParams {
  EfficiencyCurve compute_efficiency;             ///< fraction of the dtype's tensor peak
  EfficiencyCurve causal_compute_efficiency;      ///< attention-like kinds with a causal mask (empty: use the above)
  EfficiencyCurve fp8_compute_efficiency;         ///< fp8 ops, fraction of the fp8 peak (empty: the curves above)
  EfficiencyCurve fp8_causal_compute_efficiency;  ///< causal fp8 ops (empty: fp8_compute_efficiency, then the above)
  EfficiencyCurve memory_efficiency;              ///< fraction of the HBM bandwidth, every dtype
  /// The kind's fixed cost per kernel beyond ComputeParams::launch_overhead_s (a cuDNN call's plan, a reduction's
  /// tail), added to each of its ops; `paratwin calibrate --fit-launch-overhead` fits it from the kind's
  /// latency-bound kernels.
  double latency_s = 0;
  /// The compute curve an op of `dtype` (causal or not) reads: the first non-empty of, for a causal fp8 op,
  /// fp8_causal_compute_efficiency, fp8_compute_efficiency, causal_compute_efficiency, compute_efficiency; for a
  /// non-causal fp8 op, fp8_compute_efficiency, compute_efficiency; for other ops the same without the fp8 curves.
  [[nodiscard]] const EfficiencyCurve& compute_curve(DType dtype, bool causal) const;
};

/// Compute model constants.
struct ComputeParams {
  double launch_overhead_s = 0;                         ///< added to every kernel
  std::array<KernelParams, kComputeKindCount> kernels;  ///< indexed by ComputeKind
  [[nodiscard]] const KernelParams& of(ComputeKind kind) const { return kernels[static_cast<std::size_t>(kind)]; }
  [[nodiscard]] KernelParams& of(ComputeKind kind) { return kernels[static_cast<std::size_t>(kind)]; }
};

/// Everything the simulator takes from published measurements, overridable by a calibration file.
struct Calibration {
  std::string source;  ///< "" for the built-in numbers, else the calibration file
  NcclParams nccl;
  LinkClassParams nvlink;   ///< scale-up links
  LinkClassParams network;  ///< NIC links
  ComputeParams compute;
  /// Measured cost curves (`paratwin calibrate`): a single-node collective of a listed (kind, group size) takes the
  /// curve's time instead of the NCCL model's; send/recv pairs use kind "send".
  std::vector<CollectiveCurve> collectives;
  [[nodiscard]] const CollectiveCurve* curve_for(std::string_view kind, int ranks) const;
};

/// The built-in constants (NCCL 2.28.9 Hopper rows, hardware-reference.md measurements).
[[nodiscard]] Calibration default_calibration();
/// Applies a calibration YAML document on top of `base`. `source` names the file in messages.
[[nodiscard]] Calibration apply_calibration_yaml(Calibration base, std::string_view yaml_text, std::string_view source);
/// default_calibration() overridden by the file at `path`.
[[nodiscard]] Calibration load_calibration_file(const std::string& path);

}  // namespace paratwin
