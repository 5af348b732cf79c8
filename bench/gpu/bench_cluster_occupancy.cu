// How many thread-block clusters of 2 and of 4 blocks run at once on this GPU for blocks shaped like the persistent
// grouped GEMM kernel's (backend/cuda/grouped_gemm_kernel.cu: 384 threads, one block per multiprocessor, ~211 KB or
// ~226 KB of dynamic shared memory): cudaOccupancyMaxActiveClusters, which the kernel's launch uses too. A cluster
// stays within one GPC, so where a GPC's multiprocessors are not a multiple of the cluster size some stay idle.
// Run it before changing the kernel's cluster shape: build/bench/bench_cluster_occupancy (no arguments).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace {

constexpr int kThreads = 384;

__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kThreads, 1) clusters_of_2(int* out) {
  extern __shared__ int smem[];
  if (out != nullptr) out[0] = smem[0];
}
__global__ void __cluster_dims__(4, 1, 1) __launch_bounds__(kThreads, 1) clusters_of_4(int* out) {
  extern __shared__ int smem[];
  if (out != nullptr) out[0] = smem[0];
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

template <class Kernel>
int max_active_clusters(Kernel kernel, unsigned cluster_blocks, unsigned smem_bytes) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)),
        "cudaFuncSetAttribute");
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(cluster_blocks);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem_bytes;
  int clusters = 0;
  check(cudaOccupancyMaxActiveClusters(&clusters, kernel, &config), "cudaOccupancyMaxActiveClusters");
  return clusters;
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  for (const unsigned smem_bytes : {216608u, 231488u}) {  // the kernel's with a 3-stage and a 4-stage ring
    const int two = max_active_clusters(clusters_of_2, 2, smem_bytes);
    const int four = max_active_clusters(clusters_of_4, 4, smem_bytes);
    std::printf("%s, %d SMs, %u bytes of shared memory per block: clusters of 2: %d (%d SMs), of 4: %d (%d SMs)\n",
                prop.name, prop.multiProcessorCount, smem_bytes, two, 2 * two, four, 4 * four);
  }
  return 0;
}
