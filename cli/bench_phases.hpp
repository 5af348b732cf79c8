#pragma once
/// `paratwin bench` on GPUs measures its sweep in two phases, each with its own warm-up and measured steps: the
/// collectives, then the compute kernels. Run as one chain, the sweep's causal attention on an H200 pair took 13-17 %
/// less time than in a 1-GPU sweep and in prefill runs on the same GPUs (docs/accuracy.md): presumably every step's
/// collective phase (a third of the step, few SMs busy) left the power cap room to raise the clock for the compute
/// ops after it, where a prefill runs its kernels back to back. Apart, the compute kernels run back to back as in a
/// prefill, and the collectives alone, as nccl-tests times them. join_bench_phases puts the two phases' traces back
/// into one trace of the whole sweep.

#include "models/schedule.hpp"
#include "traces/trace.hpp"

namespace paratwin::cli {

/// The trace of the whole sweep `sweep` (build_bench_schedule with collectives and compute) from the traces of its
/// collectives-only and compute-only sweeps. The sweep orders each rank's collectives before its compute ops, so a
/// compute event's op index moves past its rank's collectives, and its times past the collective phase's last end;
/// the trace carries `sweep`'s schedule hash and the compute phase's metadata, each phase's median step in
/// meta.extra. Throws paratwin::InternalError when a phase's events do not name the sweep's ops at their places.
[[nodiscard]] Trace join_bench_phases(const Schedule& sweep, const Trace& collectives, const Trace& compute);

}  // namespace paratwin::cli
