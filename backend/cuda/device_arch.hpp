#pragma once
/// What GPU the calling host thread's current device is: the launchers of kernels built for one architecture only
/// (sm_90a: wgmma, the copy engine's tensor loads, setmaxnreg) ask before they take a call.

namespace paratwin::cuda {

/// Whether the current device is compute capability 9.0 (H100, H200); false when the runtime cannot tell.
[[nodiscard]] bool current_device_is_sm90();

}  // namespace paratwin::cuda
