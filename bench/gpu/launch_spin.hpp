#pragma once
// A kernel that only waits: queued ahead of a timed region, it keeps the GPU busy while the host enqueues the region's
// launches, so the region's start event fires with them already queued (the host's launch latency stays out of the
// timing) and without moving a byte through memory (nothing for the timed kernel to write back or find in L2).
#include <cuda_runtime.h>

#include <cstdint>

namespace paratwin::bench {

/// One thread that spins for about `ns` nanoseconds of the GPU's global timer.
void launch_spin(std::int64_t ns, cudaStream_t stream);

}  // namespace paratwin::bench
