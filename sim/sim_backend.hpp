#pragma once
/// The SimGrid backend: executes a Schedule on a simulated cluster (docs/sim.md). No SimGrid type appears here.
///
///   SimResult result = simulate(schedule, placement, SimOptions{});
///   result.summary.end_to_end_s   // TTFT for a prefill schedule, step time for a decode step
///   write_chrome_trace_file(result.trace, "run.json");
///
/// simulate() may be called any number of times per process: by default each call runs SimGrid (whose engine is a
/// process-wide singleton with a clock that never resets) in a forked child process and reads the result back, so
/// equal inputs give byte-identical traces. Do not call it while other threads of the process are running.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "models/schedule.hpp"
#include "topology/placement.hpp"
#include "traces/trace.hpp"

namespace paratwin {

/// How to simulate.
struct SimOptions {
  std::string calibration_file;  ///< YAML calibration (format in docs/sim.md); "" = built-in published constants
  bool nccl_model = true;        ///< NCCL 2.28 tuning model: latencies, bandwidth caps, algorithm/protocol choice.
                                 ///< false = pure α-β: ring algorithms, per-step α = path latency, no caps
  bool enable_nvls = false;      ///< allow NVLS where the cluster has it (scale_up.nvls); NCCL_NVLS_ENABLE
  std::string algorithms;        ///< NCCL_ALGO-like restriction, e.g. "ring" or "ring,tree"; "" = all
  std::string protocols;         ///< NCCL_PROTO-like restriction, e.g. "simple"; "" = all
  bool fast = false;             ///< simulate each distinct layer once (two consecutive copies) and reuse it
  bool isolate_process = true;   ///< run SimGrid in a forked child; false = in this process (once per process)
  std::string schedule_hash;     ///< schedule_hash(schedule) if the caller has it; "" = computed here (it costs
                                 ///< about as much as the simulation; done on the other core while the child runs)
};

/// Traffic through one link direction.
struct LinkUsage {
  std::string name;        ///< e.g. "n1.nic3.up"
  std::string link_class;  ///< "nvlink", "nic", "uplink"
  double bytes = 0;
  double utilization = 0;  ///< bytes / (bandwidth × end_to_end_s)
};

/// One model layer (ops with Op::layer == layer), over all ranks.
struct LayerBreakdown {
  int layer = 0;
  double start_s = 0;         ///< first op start, any rank
  double end_s = 0;           ///< last op end, any rank
  double compute_s = 0;       ///< busy compute stream time on the critical rank
  double comm_s = 0;          ///< busy comm stream time on the critical rank
  double exposed_comm_s = 0;  ///< comm time not overlapped by compute, critical rank
};

/// One op kind ("gemm", "all_gather", "send", ...).
struct KindBreakdown {
  std::string kind;
  std::string stream;          ///< "compute" or "comm"
  std::int64_t count = 0;      ///< ops over all ranks
  double critical_rank_s = 0;  ///< summed duration on the critical rank
  double mean_rank_s = 0;      ///< summed duration averaged over ranks
};

/// What a simulation found.
struct SimSummary {
  Phase phase = Phase::kPrefill;
  double end_to_end_s = 0;  ///< TTFT (prefill) or step time (decode): last op end over all ranks
  int critical_rank = 0;    ///< rank whose last op ends last (lowest on ties)
  std::vector<LayerBreakdown> layers;
  std::vector<KindBreakdown> kinds;
  std::vector<double> exposed_comm_s;  ///< per rank: comm-stream time during which its compute stream is idle
  double critical_exposed_comm_s = 0;
  double compute_utilization = 0;         ///< Σ_ops flops / peak(dtype) over (ranks × end_to_end_s)
  std::vector<LinkUsage> busiest_links;   ///< the five with the highest utilization
  std::map<std::string, int> algorithms;  ///< NCCL algorithm/protocol chosen, instances per collective shape
  std::int64_t simgrid_tasks = 0;         ///< parallel tasks SimGrid simulated
  std::int64_t reused_instances = 0;      ///< isolated collective instances answered from an identical one
  int layers_reused = 0;                  ///< fast mode: layers copied instead of simulated
  double wall_s = 0;                      ///< host seconds the simulation took
};

struct SimResult {
  Trace trace;
  SimSummary summary;
};

/// Simulates `schedule` on `placement` (its cluster). Throws paratwin::Error for a schedule that does not fit the
/// placement, an inconsistent schedule, a bad calibration file or cluster numbers the simulator cannot use.
[[nodiscard]] SimResult simulate(const Schedule& schedule, const Placement& placement, const SimOptions& options);

/// Every rank's compute-stream seconds per micro-batch, [rank][micro_batch], as simulate() times the compute ops (the
/// calibrated roofline of docs/sim.md, "Compute"), without running SimGrid: one pass over the ops. Each rank runs its
/// compute ops one at a time and the simulator gives each exactly this duration, so sums of these along any chain of
/// dependencies bound SimSummary::end_to_end_s from below (what `paratwin plan` prunes with). Throws paratwin::Error
/// for a bad calibration file.
[[nodiscard]] std::vector<std::vector<double>> compute_stream_s(const Schedule& schedule, const GpuSpec& gpu,
                                                                const SimOptions& options);

/// The Backend view of simulate(): returns the trace only (call simulate() for the summary).
[[nodiscard]] std::unique_ptr<Backend> make_sim_backend(const SimOptions& options);

}  // namespace paratwin
