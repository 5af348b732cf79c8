#pragma once
/// Fits the simulator's calibration (docs/sim.md §5) to measured traces (docs/compare.md, "Calibration").
///
/// traces/ is a leaf (it must not depend on sim/ or models/), so what the fit needs from them comes in
/// `FitInputs`: the GPU's peaks and line rates (the CLI takes them from the cluster), the launch overhead the sim
/// adds to every kernel, and the compute kinds the calibration file accepts.

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "traces/error_stats.hpp"
#include "traces/collective_curve.hpp"
#include "traces/trace.hpp"

namespace paratwin {

struct FitInputs {
  double bf16_flops_per_s = 0;  ///< tensor peak of every non-fp8 op
  double fp8_flops_per_s = 0;   ///< tensor peak of fp8 ops
  double hbm_bytes_per_s = 0;
  double nvlink_line_rate_bytes_per_s = 0;   ///< per GPU and direction: the fitted NVLink bandwidth's upper bound
  double network_line_rate_bytes_per_s = 0;  ///< per NIC and direction: the fitted network bandwidth's upper bound
  double launch_overhead_s = 0;              ///< added to every kernel by the compute model, kept as is unless fitted
  /// Fit the launch overhead instead: the least time any kernel took beyond its work at efficiency 1 (a one-row
  /// kernel is nothing but that fixed cost), so that the curves fit only what a kernel's size adds to it; and each
  /// kind's latency beyond it, from the kind's latency-bound kernels (kLatencyBoundWorkFraction).
  bool fit_launch_overhead = false;
  /// Compute kinds the calibration file accepts: trace kind → its key under compute.kernels (they can differ).
  std::map<std::string, std::string> compute_kinds;
  bool holdout = false;  ///< also fit on every other size and measure the error on the rest
};

/// α-β of one link class: a call of kind k over n ranks of nccl-tests size S takes steps(k, n)·α + S·busbw
/// factor(k, n) / B (the ring closed forms the sim's α-β mode follows).
struct LinkFit {
  std::string link_class;  ///< "nvlink" or "network"
  double latency_s = 0, bandwidth_bytes_per_s = 0;
  double line_rate_bytes_per_s = 0;  ///< the bound B was fitted under
  std::size_t calls = 0;
  bool latency_at_bound = false;    ///< the data wanted α < 0; α = 0 kept
  bool bandwidth_at_bound = false;  ///< the data wanted B above the line rate; B = line rate kept
};

/// An efficiency curve of one compute kind: points (size, efficiency), sizes increasing, 0 < efficiency ≤ 1.
struct CurveFit {
  std::string kind;  ///< trace kind
  std::string key;   ///< its key under compute.kernels
  /// "compute_efficiency", "causal_compute_efficiency" or "memory_efficiency"; fp8 kernels in the compute regime
  /// "fp8_compute_efficiency" or "fp8_causal_compute_efficiency"
  std::string curve;
  std::vector<std::pair<double, double>> points;
  std::size_t kernels = 0;
  std::size_t points_at_bound = 0;  ///< points where the data wanted an efficiency above 1 (kept at 1)
};

struct HoldoutError {
  std::string kind;  ///< compute kind or communication kind; "<kind> (fp8)" for a kind's fp8 compute curves
  ErrorStats stats;
};

struct CalibrationFit {
  std::vector<LinkFit> links;
  /// Per (collective kind, group size) of single-node calls seen at two sizes or more: the median time per size.
  std::vector<CollectiveCurve> collectives;
  std::vector<CurveFit> curves;
  double launch_overhead_s = 0;
  bool launch_overhead_fitted = false;  ///< fitted from the kernels (FitInputs::fit_launch_overhead), not kept
  /// With a fitted launch overhead: per trace kind with latency-bound kernels, its fixed cost beyond the overhead.
  std::map<std::string, double> kind_latency_s;
  std::vector<std::string> notes;     ///< what was not fitted, and why
  std::vector<HoldoutError> holdout;  ///< per kind, when FitInputs::holdout
  std::size_t communication_calls = 0, compute_kernels = 0;
};

/// A kernel whose work at efficiency 1 is below this fraction of its measured time is latency-bound: its time beyond
/// the work is a fixed cost (the launch, a library call's set-up), which FitInputs::fit_launch_overhead fits per kind.
/// On the 2026-11-29 H200 sweeps: the one-row norms and reorders, cuDNN's 512-token attention, cuBLAS's smallest
/// GEMMs (docs/compare.md).
inline constexpr double kLatencyBoundWorkFraction = 0.1;

/// Fits links (per class present) and efficiency curves (per kind and regime present) to `traces`. Throws
/// paratwin::Error for foreign traces, bad inputs, or traces with nothing to fit.
[[nodiscard]] CalibrationFit fit_calibration(const std::vector<Trace>& traces, const FitInputs& inputs);

/// Which of the simulator's communication models the file is for. They read bandwidth differently: the α-β mode
/// (`paratwin sim --alpha-beta`) runs collectives at the links' bandwidth, the NCCL model (the default) at NCCL's
/// graph bandwidth = graph fraction × the link's line rate. A fitted B therefore goes to `links.<class>` for the
/// former and to `nccl.<class>_graph_fraction` = B / line rate for the latter (writing it to the links too would
/// derate it twice).
enum class CalibrationTarget { kNcclModel, kAlphaBeta };

/// The fit as a calibration YAML document (docs/sim.md §5) for `target`, with `header` lines and the hold-out
/// errors as comments.
[[nodiscard]] std::string calibration_yaml(const CalibrationFit& fit, const std::vector<std::string>& header,
                                           CalibrationTarget target);

/// A piecewise-linear curve in log2(size), clamped outside its points: the reading rule of efficiency curves, here
/// so that the fit and the simulator (EfficiencyCurve::at, sim/ may include traces/) read them alike.
[[nodiscard]] double curve_at(const std::vector<std::pair<double, double>>& points, double size);

}  // namespace paratwin
