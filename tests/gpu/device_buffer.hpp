#pragma once
// Device memory for the GPU tests: one cudaMalloc'd block that a failed allocation fails the test case on (REQUIRE)
// and that is freed when the case ends, whichever way it ends.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstddef>

namespace paratwin::test {

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(std::size_t bytes) { REQUIRE(cudaMalloc(&ptr, bytes) == cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace paratwin::test
