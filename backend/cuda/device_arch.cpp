#include "backend/cuda/device_arch.hpp"

#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda/cuda_check.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {

bool current_device_is_sm90() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) return false;
  return major == 9 && minor == 0;
}

int persistent_pair_blocks(const void* kernel, unsigned threads, unsigned smem_bytes, int pairs, const char* name) {
  PARATWIN_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(2);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem_bytes;
  int clusters = 0;
  PARATWIN_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &config));
  PARATWIN_ASSERT(clusters >= 1, "the {} fits no cluster on this device", name);
  return 2 * std::min(pairs, clusters);
}

}  // namespace paratwin::cuda
