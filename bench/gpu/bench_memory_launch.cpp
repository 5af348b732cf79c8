// Where the memory-bound layer kernels' time goes (issue 6: rmsnorm, add, rope, silu_mul at the zoo models' 8K and 16K
// prefill shapes). bench_kernels times each kernel as one launch between two events and holds it against a copy of
// 2 GiB; this program adds, per kernel, the measurements that separate a fixed cost per launch from the kernel's own
// bandwidth. The kernel and a device-to-device copy (cudaMemcpyAsync) of the kernel's bytes are each timed as:
// - "single": one launch between two events, as bench_kernels times (the host's launch latency included: the start
//   event fires on an idle GPU before the launch reaches it);
// - "queued": one launch between two events enqueued behind a spin kernel, so the launch is waiting when the start
//   event fires (GPU-side start-up and drain included, host latency not);
// - "batch": N back-to-back launches between two events (also queued), per launch;
// - with --after-gemm, "single" again right after 0.2 s of 8192³ bf16 GEMMs (the order of bench_kernels' full table,
//   which runs each model's memory kernels after the previous model's GEMMs).
// Medians of repeated runs on seeded random data. Fractions are of the 2 GiB copy (the ceiling issue 6 names).
// Usage: bench_memory_launch [--after-gemm] [--csv FILE] [--kernels K1,K2,...] [--profile KERNEL:MODEL:TOKENS]
// (--kernels keeps those of rmsnorm, add, rope, silu_mul; --profile only launches that kernel three times, for a
// profiler such as ncu.)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "bench/gpu/bench_output.hpp"
#include "bench/gpu/kernel_timing.hpp"
#include "bench/gpu/launch_spin.hpp"
#include "models/model_spec.hpp"
#include "topology/error.hpp"

namespace {

using paratwin::bench::DeviceBuffer;
using paratwin::bench::fill_random;
using i64 = std::int64_t;

constexpr int kBatchLaunches = 20;
constexpr i64 kSpinNs = 300'000;  // longer than the host takes to enqueue a batch

// One kernel at one shape: its buffers, its launch and the bytes it must move.
struct Case {
  std::string kernel, model;
  i64 tokens = 0;
  double bytes = 0;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::function<void()> launch;
  [[nodiscard]] std::string id() const { return fmt::format("{}:{}:{}", kernel, model, tokens); }
};

struct Timings {
  double single_s = 0, queued_s = 0, batch_s = 0, after_gemm_s = 0;
};

struct Row {
  std::string kernel, model;
  i64 tokens = 0;
  double bytes = 0;
  Timings copy, kernel_t;
};

class Timer {
 public:
  explicit Timer(cudaStream_t stream) : stream_(stream) {
    PARATWIN_CUDA_CHECK(cudaEventCreate(&start_));
    PARATWIN_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Median over `reps` of (time between two events around `launches` launches) / launches; behind a spin kernel when
  // `queued`.
  double median_s(const std::function<void()>& launch, int launches, bool queued, int reps) {
    for (int i = 0; i < 2; ++i) launch();
    PARATWIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> s;
    for (int r = 0; r < reps; ++r) {
      if (queued) paratwin::bench::launch_spin(kSpinNs, stream_);
      PARATWIN_CUDA_CHECK(cudaEventRecord(start_, stream_));
      for (int i = 0; i < launches; ++i) launch();
      PARATWIN_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      PARATWIN_CUDA_CHECK(cudaEventSynchronize(stop_));
      PARATWIN_CUDA_CHECK(cudaGetLastError());
      float ms = 0;
      PARATWIN_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
      s.push_back(static_cast<double>(ms) * 1e-3 / launches);
    }
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// The cases of bench_kernels' memory_kernels() (kernel_cases.cpp), same shapes and byte counts.
std::vector<Case> cases_for(const paratwin::ModelSpec& m, i64 tokens, cudaStream_t stream, std::uint64_t& seed) {
  namespace cuda = paratwin::cuda;
  std::vector<Case> out;
  const auto buffer = [&](Case& c, i64 elements) {
    c.buffers.push_back(std::make_unique<DeviceBuffer>(elements * 2));
    fill_random(*c.buffers.back(), elements, ++seed, stream);
    return c.buffers.back()->get();
  };
  const i64 H = m.hidden_size;
  {
    Case c{"rmsnorm", m.name, tokens, 2.0 * static_cast<double>(tokens * H * 2), {}, {}};
    void* x = buffer(c, tokens * H);
    void* y = buffer(c, tokens * H);
    void* w = buffer(c, H);
    c.launch = [=] { cuda::launch_rmsnorm(x, y, w, tokens, H, 1, H, nullptr, 1e-6f, stream); };
    out.push_back(std::move(c));
  }
  {
    Case c{"add", m.name, tokens, 3.0 * static_cast<double>(tokens * H * 2), {}, {}};
    void* x = buffer(c, tokens * H);
    void* y = buffer(c, tokens * H);
    c.launch = [=] { cuda::launch_add(y, x, tokens * H, stream); };
    out.push_back(std::move(c));
  }
  {
    const bool mla = m.mla.has_value();
    const i64 dim = mla ? m.mla->qk_rope_head_dim : m.head_dim;
    const i64 heads = mla ? m.num_attention_heads : m.num_attention_heads + m.num_kv_heads;
    const i64 row = mla ? heads * dim : (m.num_attention_heads + 2 * m.num_kv_heads) * dim;
    Case c{"rope", m.name, tokens, 2.0 * static_cast<double>(tokens * heads * dim * 2), {}, {}};
    void* x = buffer(c, tokens * row);
    c.launch = [=] { cuda::launch_rope(x, tokens, heads, dim, row, nullptr, 10000.0f, stream); };
    out.push_back(std::move(c));
  }
  {
    const i64 rows = m.moe ? tokens * m.moe->experts_per_token : tokens;
    const i64 ffn = m.moe ? m.moe->expert_intermediate_size : m.intermediate_size;
    Case c{"silu_mul", m.name, tokens, 3.0 * static_cast<double>(rows * ffn * 2), {}, {}};
    void* gu = buffer(c, rows * 2 * ffn);
    void* o = buffer(c, rows * ffn);
    c.launch = [=] { cuda::launch_silu_mul(gu, o, rows, ffn, stream); };
    out.push_back(std::move(c));
  }
  return out;
}

class GemmBurst {
 public:
  GemmBurst(cublasHandle_t blas, cudaStream_t stream)
      : blas_(blas), stream_(stream), x_(kN * kN * 2), w_(kN * kN * 2), y_(kN * kN * 2) {
    fill_random(x_, kN * kN, 11, stream);
    fill_random(w_, kN * kN, 12, stream, false, 0.01f);
  }
  // About 0.2 s of GEMMs at H200 rates (1.4 ms each), finished before returning.
  void run() {
    for (int i = 0; i < 150; ++i) paratwin::bench::dense_gemm(blas_, x_.get(), w_.get(), y_.get(), kN, kN, kN);
    PARATWIN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  static constexpr i64 kN = 8192;
  cublasHandle_t blas_;
  cudaStream_t stream_;
  DeviceBuffer x_, w_, y_;
};

std::string frac(double bytes, double s, double ceiling) {
  return fmt::format("{:.2f}", bytes / s / ceiling);
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv, profile, kernels = "rmsnorm,add,rope,silu_mul";
  bool after_gemm = false;
  const char* usage =
      "usage: bench_memory_launch [--after-gemm] [--csv FILE] [--kernels K1,K2,...] [--profile KERNEL:MODEL:TOKENS]";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--csv" && i + 1 < argc) {
      csv = argv[++i];
    } else if (a == "--kernels" && i + 1 < argc) {
      kernels = argv[++i];
    } else if (a == "--profile" && i + 1 < argc) {
      profile = argv[++i];
    } else if (a == "--after-gemm") {
      after_gemm = true;
    } else if (a == "--help" || a == "-h") {
      fmt::print("{}\n", usage);
      return 0;
    } else {
      fmt::print(stderr, "bench_memory_launch: unknown or incomplete argument '{}' ({})\n", a, usage);
      return 2;
    }
  }
  try {
    // Bad arguments fail here, before the GPU is touched.
    for (std::size_t from = 0; from <= kernels.size();) {
      const std::size_t to = std::min(kernels.find(',', from), kernels.size());
      const std::string k = kernels.substr(from, to - from);
      if (k != "rmsnorm" && k != "add" && k != "rope" && k != "silu_mul") {
        paratwin::fail("--kernels {}: '{}' is none of rmsnorm, add, rope, silu_mul", kernels, k);
      }
      from = to + 1;
    }
    if (!csv.empty()) paratwin::bench::require_creatable_csv(csv);  // fails now, not after the whole run

    if (!paratwin::bench::cuda_gpu_visible("bench_memory_launch")) return 1;
    PARATWIN_CUDA_CHECK(cudaSetDevice(0));
    cudaStream_t stream = nullptr;
    PARATWIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasHandle_t blas = nullptr;
    PARATWIN_CUBLAS_CHECK(cublasCreate(&blas));
    PARATWIN_CUBLAS_CHECK(cublasSetStream(blas, stream));
    std::uint64_t seed = 100;
    const std::vector<std::string> models = {"deepseek-v3.2", "llama-3.1-70b", "qwen3-235b-a22b"};

    if (!profile.empty()) {
      bool found = false;
      for (const auto& name : models) {
        for (const i64 tokens : {i64{8192}, i64{16384}}) {
          for (auto& c : cases_for(paratwin::load_model(name), tokens, stream, seed)) {
            if (c.id() != profile) continue;
            for (int i = 0; i < 3; ++i) c.launch();
            PARATWIN_CUDA_CHECK(cudaStreamSynchronize(stream));
            PARATWIN_CUDA_CHECK(cudaGetLastError());
            found = true;
          }
        }
      }
      if (!found) {
        paratwin::fail("--profile {}: no such case (KERNEL:MODEL:TOKENS, e.g. rmsnorm:qwen3-235b-a22b:8192)", profile);
      }
      return 0;
    }
    Timer timer(stream);
    const auto ceilings = paratwin::bench::measure_ceilings(blas, stream);
    const double ceiling = ceilings.copy_bytes_per_s;
    // What two events cost around any launch: a 16-byte memset (a launch that moves next to nothing).
    DeviceBuffer probe(16);
    const auto memset16 = [&] { PARATWIN_CUDA_CHECK(cudaMemsetAsync(probe.get(), 0, 16, stream)); };
    const double probe_single = timer.median_s(memset16, 1, false, 21);
    const double probe_queued = timer.median_s(memset16, 1, true, 21);
    const double probe_batch = timer.median_s(memset16, kBatchLaunches, true, 7);
    std::unique_ptr<GemmBurst> burst;
    if (after_gemm) burst = std::make_unique<GemmBurst>(blas, stream);

    std::vector<Row> rows;
    for (const auto& name : models) {
      const auto m = paratwin::load_model(name);
      for (const i64 tokens : {i64{8192}, i64{16384}}) {
        for (auto& c : cases_for(m, tokens, stream, seed)) {
          if (fmt::format(",{},", kernels).find(fmt::format(",{},", c.kernel)) == std::string::npos) continue;
          Row r{c.kernel, c.model, c.tokens, c.bytes, {}, {}};
          const i64 copy_bytes = static_cast<i64>(c.bytes / 2) / 16 * 16;  // read + written = the kernel's bytes
          DeviceBuffer src(copy_bytes), dst(copy_bytes);
          fill_random(src, copy_bytes / 2, ++seed, stream);
          const auto copy = [&] {
            PARATWIN_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), static_cast<std::size_t>(copy_bytes),
                                                cudaMemcpyDeviceToDevice, stream));
          };
          for (auto [t, launch] : {std::pair{&r.copy, std::function<void()>(copy)}, std::pair{&r.kernel_t, c.launch}}) {
            t->single_s = timer.median_s(launch, 1, false, 21);
            t->queued_s = timer.median_s(launch, 1, true, 21);
            t->batch_s = timer.median_s(launch, kBatchLaunches, true, 7);
            if (burst) {
              burst->run();
              t->after_gemm_s = timer.median_s(launch, 1, false, 10);
            }
          }
          rows.push_back(std::move(r));
        }
      }
    }

    fmt::print("ceiling: device-to-device copy of 2 GiB {:.0f} GB/s (read + written)\n", ceiling / 1e9);
    fmt::print(
        "empty launch (16-byte memset) between two events: single {:.1f} us, queued {:.1f} us, batch {:.1f} us\n",
        probe_single * 1e6, probe_queued * 1e6, probe_batch * 1e6);
    fmt::print("fractions of the 2 GiB copy; copy@size = cudaMemcpyAsync moving the kernel's bytes\n\n");
    fmt::print("{:<9} {:<16} {:>6} {:>7} | {:>9} {:>6} {:>6} {:>6} {:>6} | {:>9} {:>6} {:>6} {:>6} {:>6}\n", "kernel",
               "model", "tokens", "MB", "copy us", "single", "queued", "batch", "aGEMM", "kernel us", "single",
               "queued", "batch", "aGEMM");
    for (const auto& r : rows) {
      const auto cell = [&](double s) { return s > 0 ? frac(r.bytes, s, ceiling) : std::string("-"); };
      fmt::print("{:<9} {:<16} {:>6} {:>7.0f} | {:>9.1f} {:>6} {:>6} {:>6} {:>6} | {:>9.1f} {:>6} {:>6} {:>6} {:>6}\n",
                 r.kernel, r.model, r.tokens, r.bytes / 1e6, r.copy.single_s * 1e6, cell(r.copy.single_s),
                 cell(r.copy.queued_s), cell(r.copy.batch_s), cell(r.copy.after_gemm_s), r.kernel_t.single_s * 1e6,
                 cell(r.kernel_t.single_s), cell(r.kernel_t.queued_s), cell(r.kernel_t.batch_s),
                 cell(r.kernel_t.after_gemm_s));
    }
    if (!csv.empty()) {
      paratwin::bench::write_csv_atomically(csv, [&](std::ofstream& f) {
        f << "kernel,model,tokens,bytes,copy_single_s,copy_queued_s,copy_batch_s,copy_after_gemm_s,kernel_single_s,"
             "kernel_queued_s,kernel_batch_s,kernel_after_gemm_s,ceiling_copy_bytes_per_s\n";
        for (const auto& r : rows) {
          f << fmt::format("{},{},{},{:.0f},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.6g}\n", r.kernel,
                           r.model, r.tokens, r.bytes, r.copy.single_s, r.copy.queued_s, r.copy.batch_s,
                           r.copy.after_gemm_s, r.kernel_t.single_s, r.kernel_t.queued_s, r.kernel_t.batch_s,
                           r.kernel_t.after_gemm_s, ceiling);
        }
      });
    }
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_memory_launch: {}\n", e.what());
    return 1;
  }
  return 0;
}
