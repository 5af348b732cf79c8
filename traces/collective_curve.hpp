#pragma once
/// A measured cost curve of one collective shape: the time of a call of `kind` over `ranks` GPUs of one node as a
/// function of its nccl-tests size S (traces/collective_bandwidth.hpp). `paratwin calibrate` fits one per (kind, group
/// size) from bench traces; the simulator then times single-node calls of that shape by the curve instead of by its
/// NCCL model (calibration key `collectives`, docs/sim.md §5). It lives in traces/ because both sides read it the
/// same way and sim/ may include traces/, not the reverse.
///
/// Reading rule: linear in S between neighbouring points — each segment is its own α-β (latency and bandwidth), so a
/// protocol or algorithm switch of NCCL between sizes is a change of segment and α + S/β data is reproduced exactly;
/// below the smallest size, the smallest size's time (latency-bound); above the largest, the last segment extended.

#include <string>
#include <utility>
#include <vector>

namespace paratwin {

struct CollectiveCurve {
  std::string kind;  ///< trace kind: all_gather, reduce_scatter, all_reduce, all_to_all, broadcast, send
  int ranks = 0;     ///< group size (2 for send)
  std::vector<std::pair<double, double>> points;  ///< (nccl-tests size in bytes, seconds), sizes increasing
  [[nodiscard]] double seconds_at(double size_bytes) const;
};

}  // namespace paratwin
