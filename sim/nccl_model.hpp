#pragma once
/// NCCL 2.28's tuning model (src/graph/tuning.cc ncclTopoTuneModel + ncclTopoGetAlgoTime, enqueue.cc algorithm
/// choice), evaluated for one communicator. Internal to sim/.

#include <array>
#include <cstdint>
#include <string>

#include "models/dtype.hpp"
#include "sim/calibration.hpp"

namespace paratwin::sim {

/// The NCCL functions the tuning table covers.
enum class NcclFunc : std::uint8_t { kBroadcast, kAllGather, kReduceScatter, kAllReduce };

/// What the tuning model needs to know about one communicator and the hardware under it.
struct CommGeometry {
  int ranks = 1;
  int nodes = 1;
  double nvlink_bytes_per_s = 0;  ///< per GPU per direction
  double nic_bytes_per_s = 0;     ///< per NIC per direction
  int nics_per_node_usable = 1;   ///< NICs attached to the communicator's GPUs on one node (min over nodes)
  bool nvls_available = false;    ///< cluster has NVLS and the options allow it
};

/// The algorithm/protocol NCCL would pick, with its modelled cost.
struct CollChoice {
  NcclAlgo algo = NcclAlgo::kRing;
  NcclProto proto = NcclProto::kSimple;
  double latency_s = 0;          ///< lat × latCount
  double algbw_bytes_per_s = 0;  ///< algorithm bandwidth after NCCL's refinements and corrections
  double time_s = 0;             ///< latency_s + n_bytes / algbw
};

/// Masks of allowed algorithms / protocols (NCCL_ALGO / NCCL_PROTO).
struct AlgoProtoMask {
  std::array<bool, kNcclAlgoCount> algo{true, true, true, true};
  std::array<bool, kNcclProtoCount> proto{true, true, true};
};

/// Parses "ring,tree" / "ll128,simple" style lists ("" = all). Throws paratwin::Error naming `what` and the value.
[[nodiscard]] AlgoProtoMask parse_algo_proto_mask(const std::string& algorithms, const std::string& protocols);

class NcclModel {
 public:
  explicit NcclModel(const NcclParams& params) : p_(params) {}

  /// NCCL's choice for `func` moving `n_bytes` (NCCL's nBytes: count·size, × ranks for all-gather/reduce-scatter).
  /// Throws paratwin::Error when the mask leaves nothing usable.
  [[nodiscard]] CollChoice choose(NcclFunc func, std::int64_t n_bytes, DType dtype, const CommGeometry& geometry,
                                  const AlgoProtoMask& mask) const;
  /// Cost of one (algo, proto) for `func`; time_s < 0 when NCCL would not use it.
  [[nodiscard]] CollChoice evaluate(NcclFunc func, NcclAlgo algo, NcclProto proto, std::int64_t n_bytes, DType dtype,
                                    const CommGeometry& geometry) const;

  /// Point-to-point (send/recv, grouped all-to-all): protocol by size per peer, latency of one ring step.
  struct P2pCost {
    NcclProto proto = NcclProto::kSimple;
    double latency_s = 0;
    double nvlink_bytes_per_s = 0;  ///< achievable rate of one GPU's sends over NVLink
    double net_bytes_per_s = 0;     ///< achievable rate of one GPU's sends over its NIC
  };
  [[nodiscard]] P2pCost p2p(std::int64_t max_peer_bytes, bool cross_node, const CommGeometry& geometry) const;

  [[nodiscard]] const NcclParams& params() const { return p_; }

 private:
  NcclParams p_;
};

}  // namespace paratwin::sim
