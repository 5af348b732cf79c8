#pragma once
// What the GPU benchmarks do around a run: refuse a --csv path that cannot be written before the run rather than after
// it, write the CSV beside its path and rename it over the path (never half-written), and say when no GPU is visible.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "topology/error.hpp"

namespace paratwin::bench {

/// Fails (paratwin::Error naming `--csv PATH`) unless a file can be created in PATH's folder.
inline void require_creatable_csv(const std::string& path) {
  const std::string probe = path + ".paratwin-tmp";
  if (!std::ofstream(probe)) fail("--csv {}: cannot create a file in that folder", path);
  std::filesystem::remove(probe);
}

/// Writes PATH through `write` into PATH.paratwin-tmp, then renames that over PATH.
inline void write_csv_atomically(const std::string& path, const std::function<void(std::ofstream&)>& write) {
  const std::string tmp = path + ".paratwin-tmp";
  {
    std::ofstream f(tmp);
    if (!f) fail("--csv {}: cannot open the file for writing", path);
    write(f);
    if (!f.flush()) fail("--csv {}: writing the file failed", path);
  }
  std::filesystem::rename(tmp, path);
}

/// Whether a CUDA GPU is visible; if none is, says so on stderr as "`program`: no CUDA GPU visible".
inline bool cuda_gpu_visible(const char* program) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) return true;
  fmt::print(stderr, "{}: no CUDA GPU visible\n", program);
  return false;
}

}  // namespace paratwin::bench
