#pragma once
/// What GPU the calling host thread's current device is, and what it holds at once: the launchers of kernels built
/// for one architecture only (sm_90a: wgmma, the copy engine's tensor loads, setmaxnreg) ask before they take a call,
/// and the persistent kernels size their grids by it.

namespace paratwin::cuda {

/// Whether the current device is compute capability 9.0 (H100, H200); false when the runtime cannot tell.
[[nodiscard]] bool current_device_is_sm90();

/// Blocks to launch of a persistent `kernel` built in clusters of two blocks (__cluster_dims__(2, 1, 1)) with
/// `threads` threads and `smem_bytes` of dynamic shared memory: two per cluster the current device holds at once (a
/// cluster's blocks share a GPC, whose multiprocessors may be odd in number), at most two per pair of work items.
/// Sets the kernel's dynamic shared-memory limit first (a per-device attribute: the engine may drive several devices
/// from one process, and setting it is cheap). `name` names the kernel in the error when no cluster fits.
[[nodiscard]] int persistent_pair_blocks(const void* kernel, unsigned threads, unsigned smem_bytes, int pairs,
                                         const char* name);

}  // namespace paratwin::cuda
