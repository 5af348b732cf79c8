#pragma once
// What bench_kernels needs around the kernels: device buffers filled with seeded random data, CUDA-event timing (median
// of timed runs after warm-up, each launch queued behind a spin kernel; two launches in turns for a ratio) and the two
// ceilings every kernel is held against (device-to-device copy bandwidth and a large bf16 cuBLAS GEMM), measured in the
// same run. CUDA and cuBLAS errors throw paratwin::Error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "bench/gpu/launch_spin.hpp"

namespace paratwin::bench {

/// A device allocation, freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::int64_t bytes) {
    PARATWIN_CUDA_CHECK(cudaMalloc(&ptr_, static_cast<std::size_t>(std::max<std::int64_t>(bytes, 16))));
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  [[nodiscard]] void* get() const { return ptr_; }
  template <typename T>
  [[nodiscard]] T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

/// Fresh seeded random values in [−scale, scale): bf16 (or fp32) elements, never zeros.
inline void fill_random(const DeviceBuffer& b, std::int64_t elements, std::uint64_t seed, cudaStream_t stream,
                        bool fp32 = false, float scale = 1.0f) {
  cuda::launch_fill_random(b.get(), fp32, 1, elements, 0, nullptr, elements, seed, scale, 0.0f, stream);
  PARATWIN_CUDA_CHECK(cudaGetLastError());
}

/// An int table uploaded from the host.
inline void upload(const DeviceBuffer& b, const std::vector<int>& values) {
  PARATWIN_CUDA_CHECK(cudaMemcpy(b.get(), values.data(), values.size() * sizeof(int), cudaMemcpyHostToDevice));
}

/// How long the spin kernel ahead of each timed launch keeps the stream busy: longer than the host takes to enqueue the
/// start event, the launch (a cuBLAS or cuDNN call included) and the stop event.
inline constexpr std::int64_t kQueueAheadNs = 200'000;

/// Seconds of one run of `launch` on `stream` between two CUDA events, queued behind a spin kernel (as nvbench does),
/// so the start event fires with the launch already waiting, as in a server's stream where every kernel is queued
/// behind the one before: a single launch timed on an idle stream would add the host's submission latency (~4 µs,
/// measured with bench_memory_launch; docs/performance.md), which is 10 % of a 40 µs kernel and would say nothing
/// about the kernel.
template <typename Launch>
double queued_run_seconds(cudaStream_t stream, cudaEvent_t start, cudaEvent_t stop, Launch&& launch) {
  launch_spin(kQueueAheadNs, stream);
  PARATWIN_CUDA_CHECK(cudaEventRecord(start, stream));
  launch();
  PARATWIN_CUDA_CHECK(cudaEventRecord(stop, stream));
  PARATWIN_CUDA_CHECK(cudaEventSynchronize(stop));
  PARATWIN_CUDA_CHECK(cudaGetLastError());
  float ms = 0;
  PARATWIN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return static_cast<double>(ms) * 1e-3;
}

inline double median_of(std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

/// Median seconds of `timed` runs of `launch` on `stream` (queued_run_seconds), after `warmup` runs.
template <typename Launch>
double median_seconds(cudaStream_t stream, Launch&& launch, int timed = 10, int warmup = 2) {
  cudaEvent_t start = nullptr, stop = nullptr;
  PARATWIN_CUDA_CHECK(cudaEventCreate(&start));
  PARATWIN_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) launch();
  PARATWIN_CUDA_CHECK(cudaGetLastError());
  std::vector<double> seconds;
  for (int i = 0; i < timed; ++i) seconds.push_back(queued_run_seconds(stream, start, stop, launch));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median_of(std::move(seconds));
}

struct PairedSeconds {
  double reference_s = 0;  ///< median of the reference's runs
  double launch_s = 0;     ///< median of the launch's runs
};

/// Medians of `timed` runs each of `reference` and `launch`, taken in turns (reference, launch, reference, ...) after
/// `warmup` runs of each. For a ratio of the two: under the H200's power cap a GEMM's rate moves by up to ~17 % with
/// what ran before it (docs/performance.md, "The clocks, read"), so a reference timed once before a series of other
/// launches is read in another power state than the launches it is compared with; in turns both see the same states.
template <typename Reference, typename Launch>
PairedSeconds median_seconds_in_turns(cudaStream_t stream, Reference&& reference, Launch&& launch, int timed = 10,
                                      int warmup = 2) {
  cudaEvent_t start = nullptr, stop = nullptr;
  PARATWIN_CUDA_CHECK(cudaEventCreate(&start));
  PARATWIN_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) {
    reference();
    launch();
  }
  PARATWIN_CUDA_CHECK(cudaGetLastError());
  std::vector<double> reference_s, launch_s;
  for (int i = 0; i < timed; ++i) {
    reference_s.push_back(queued_run_seconds(stream, start, stop, reference));
    launch_s.push_back(queued_run_seconds(stream, start, stop, launch));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return {median_of(std::move(reference_s)), median_of(std::move(launch_s))};
}

/// Row-major Y[m × n] = X[m × k] · W[k × n], bf16 in and out, fp32 accumulation (the backend's dense GEMM).
inline void dense_gemm(cublasHandle_t blas, const void* x, const void* w, void* y, std::int64_t m, std::int64_t n,
                       std::int64_t k) {
  const float alpha = 1.0f, beta = 0.0f;
  PARATWIN_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                     static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(n), x, CUDA_R_16BF,
                                     static_cast<int>(k), &beta, y, CUDA_R_16BF, static_cast<int>(n),
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

struct Ceilings {
  double copy_bytes_per_s = 0;  ///< cudaMemcpyAsync device to device, bytes read + written
  double gemm_flops_per_s = 0;  ///< bf16 cuBLAS GEMM 8192³ on random data
};

inline Ceilings measure_ceilings(cublasHandle_t blas, cudaStream_t stream) {
  Ceilings c;
  const std::int64_t copy_bytes = std::int64_t{2} << 30;
  DeviceBuffer src(copy_bytes), dst(copy_bytes);
  fill_random(src, copy_bytes / 2, 1, stream);
  const double copy_s = median_seconds(stream, [&] {
    PARATWIN_CUDA_CHECK(
        cudaMemcpyAsync(dst.get(), src.get(), static_cast<std::size_t>(copy_bytes), cudaMemcpyDeviceToDevice, stream));
  });
  c.copy_bytes_per_s = 2.0 * static_cast<double>(copy_bytes) / copy_s;
  const std::int64_t n = 8192;
  DeviceBuffer x(n * n * 2), w(n * n * 2), y(n * n * 2);
  fill_random(x, n * n, 2, stream);
  fill_random(w, n * n, 3, stream, false, 0.01f);
  const double gemm_s = median_seconds(stream, [&] { dense_gemm(blas, x.get(), w.get(), y.get(), n, n, n); });
  c.gemm_flops_per_s = 2.0 * static_cast<double>(n * n * n) / gemm_s;
  return c;
}

}  // namespace paratwin::bench
