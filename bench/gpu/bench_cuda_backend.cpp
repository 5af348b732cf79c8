// The CUDA backend against bare loops in the same process: collectives (engine vs a bare NCCL loop, target ratio ≥
// 0.95 at ≥ 1 MiB) and GEMMs (engine vs bare cuBLAS, ≥ 0.95). The engine runs hand-made schedules of `kChain`
// dependent ops in the light instrumentation mode; the bare loops issue the same calls back to back on one stream.
// Ratio = bare time / engine time (1 = no engine overhead). Usage: bench_cuda_backend [--quick]
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "topology/cluster.hpp"
#include "topology/placement.hpp"

namespace {

using paratwin::CollectiveKind;
constexpr int kChain = 20;
constexpr int kReps = 7;

#define BENCH_CHECK(x)                                                                    \
  do {                                                                                    \
    if (!(x)) throw std::runtime_error(fmt::format("{}:{}: {}", __FILE__, __LINE__, #x)); \
  } while (false)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

paratwin::CudaOptions engine_options() {
  paratwin::CudaOptions o;
  o.model = paratwin::load_model("llama-3.1-8b");
  o.per_op_events = false;
  o.warmup_steps = 2;
  o.measured_steps = kReps;
  return o;
}

paratwin::Schedule base_schedule(int ranks) {
  paratwin::Schedule s;
  s.meta.model = "llama-3.1-8b";
  s.meta.config.tp_size = ranks;
  s.meta.prompt_tokens = 1;
  s.ranks.resize(static_cast<std::size_t>(ranks));
  return s;
}

double engine_seconds(const paratwin::Schedule& s) {
  const paratwin::RankLayout layout(s.meta.config);
  const paratwin::Placement placement(layout, paratwin::load_cluster("h200-sxm", 1));
  return paratwin::run_cuda(s, placement, engine_options()).stats.median_step_s / kChain;
}

// ---- GEMM
void fill_random_bf16(void* dst, std::int64_t count) {
  std::vector<std::uint16_t> host(static_cast<std::size_t>(count));
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (auto& v : host) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    float f = static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f;
    std::uint32_t bits = 0;
    std::memcpy(&bits, &f, 4);
    v = static_cast<std::uint16_t>(bits >> 16);
  }
  BENCH_CHECK(cudaMemcpy(dst, host.data(), host.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
}

double bare_gemm_seconds(std::int64_t m, std::int64_t n, std::int64_t k) {
  BENCH_CHECK(cudaSetDevice(0) == cudaSuccess);
  void *x = nullptr, *w = nullptr, *y = nullptr;
  BENCH_CHECK(cudaMalloc(&x, static_cast<std::size_t>(m * k * 2)) == cudaSuccess);
  BENCH_CHECK(cudaMalloc(&w, static_cast<std::size_t>(k * n * 2)) == cudaSuccess);
  BENCH_CHECK(cudaMalloc(&y, static_cast<std::size_t>(m * n * 2)) == cudaSuccess);
  // Random data, as the engine's seeded buffers: constant or zero inputs make tensor-core GEMMs ~10 % faster.
  fill_random_bf16(x, m * k);
  fill_random_bf16(w, k * n);
  cublasHandle_t h = nullptr;
  cudaStream_t st = nullptr;
  BENCH_CHECK(cudaStreamCreate(&st) == cudaSuccess);
  BENCH_CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  BENCH_CHECK(cublasSetStream(h, st) == CUBLAS_STATUS_SUCCESS);
  cudaEvent_t a = nullptr, b = nullptr;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  const float alpha = 1, beta = 0;
  std::vector<double> times;
  for (int rep = 0; rep < kReps + 2; ++rep) {
    cudaEventRecord(a, st);
    for (int i = 0; i < kChain; ++i) {
      BENCH_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                               static_cast<int>(k), &alpha, w, CUDA_R_16BF, static_cast<int>(n), x, CUDA_R_16BF,
                               static_cast<int>(k), &beta, y, CUDA_R_16BF, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
    }
    cudaEventRecord(b, st);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    if (rep >= 2) times.push_back(static_cast<double>(ms) * 1e-3 / kChain);
  }
  cublasDestroy(h);
  cudaStreamDestroy(st);
  cudaFree(x);
  cudaFree(w);
  cudaFree(y);
  return median(times);
}

double engine_gemm_seconds(std::int64_t m, std::int64_t n, std::int64_t k) {
  auto s = base_schedule(1);
  for (int i = 0; i < kChain; ++i) {
    paratwin::Op op;
    op.index = i;
    op.name = fmt::format("bench.gemm{}", i);
    if (i > 0) op.deps = {i - 1};
    paratwin::ComputeOp c;
    c.kind = paratwin::ComputeKind::kGemm;
    c.shape.m = m;
    c.shape.n = n;
    c.shape.k = k;
    op.body = c;
    s.ranks[0].push_back(op);
  }
  return engine_seconds(s);
}

// ---- collectives on every visible GPU
double bare_collective_seconds(CollectiveKind kind, std::int64_t bytes, int ranks) {
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
  std::vector<int> devs(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) devs[static_cast<std::size_t>(r)] = r;
  BENCH_CHECK(ncclCommInitAll(comms.data(), ranks, devs.data()) == ncclSuccess);
  std::vector<double> per_rank(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> times(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      cudaSetDevice(r);
      const auto n = static_cast<std::size_t>(ranks);
      const auto b = static_cast<std::size_t>(bytes);
      void *send = nullptr, *recv = nullptr;
      cudaMalloc(&send, b * n);
      cudaMalloc(&recv, b * n);
      cudaMemset(send, 0, b * n);
      cudaStream_t st = nullptr;
      cudaStreamCreate(&st);
      cudaEvent_t a = nullptr, e = nullptr;
      cudaEventCreate(&a);
      cudaEventCreate(&e);
      auto comm = comms[static_cast<std::size_t>(r)];
      for (int rep = 0; rep < kReps + 2; ++rep) {
        cudaEventRecord(a, st);
        for (int i = 0; i < kChain; ++i) {
          const std::size_t count = b / 2;
          switch (kind) {
            case CollectiveKind::kAllReduce:
              ncclAllReduce(send, send, count, ncclBfloat16, ncclSum, comm, st);
              break;
            case CollectiveKind::kAllGather:
              ncclAllGather(send, recv, count, ncclBfloat16, comm, st);
              break;
            case CollectiveKind::kReduceScatter:
              ncclReduceScatter(send, recv, count, ncclBfloat16, ncclSum, comm, st);
              break;
            case CollectiveKind::kAllToAll:
              ncclAlltoAll(send, recv, count / n, ncclBfloat16, comm, st);
              break;
            case CollectiveKind::kBroadcast:
              ncclBroadcast(send, send, count, ncclBfloat16, 0, comm, st);
              break;
          }
        }
        cudaEventRecord(e, st);
        cudaEventSynchronize(e);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, e);
        if (rep >= 2) times[static_cast<std::size_t>(r)].push_back(static_cast<double>(ms) * 1e-3 / kChain);
      }
      cudaFree(send);
      cudaFree(recv);
      cudaStreamDestroy(st);
    });
  }
  for (auto& t : threads) t.join();
  for (auto c : comms) ncclCommDestroy(c);
  double worst = 0;
  for (const auto& t : times) worst = std::max(worst, median(t));
  return worst;
}

double engine_collective_seconds(CollectiveKind kind, std::int64_t bytes, int ranks) {
  auto s = base_schedule(ranks);
  for (int r = 0; r < ranks; ++r) {
    for (int i = 0; i < kChain; ++i) {
      paratwin::Op op;
      op.index = i;
      op.name = fmt::format("bench.coll{}", i);
      op.stream = paratwin::Stream::kComm;
      if (i > 0) op.deps = {i - 1};
      paratwin::CollectiveOp c;
      c.kind = kind;
      c.family = paratwin::GroupFamily::kTp;
      c.group_size = ranks;
      c.bytes = bytes;
      c.instance = i;
      if (kind == CollectiveKind::kAllToAll) {
        c.send_bytes.assign(static_cast<std::size_t>(ranks), bytes / ranks);
        c.recv_bytes = c.send_bytes;
      }
      op.body = c;
      s.ranks[static_cast<std::size_t>(r)].push_back(op);
    }
  }
  return engine_seconds(s);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    fmt::print(stderr, "bench_cuda_backend: no GPU visible\n");
    return 1;
  }
  try {
    fmt::print("# GEMMs: engine vs bare cuBLAS (bf16, {} chained per step, median of {} steps)\n", kChain, kReps);
    fmt::print("{:>6} {:>6} {:>6} {:>12} {:>12} {:>8} {:>8}\n", "m", "n", "k", "bare us", "engine us", "TFLOP/s",
               "ratio");
    const std::vector<std::array<std::int64_t, 3>> gemms =
        quick
            ? std::vector<std::array<std::int64_t, 3>>{{4096, 6144, 4096}}
            : std::vector<std::array<std::int64_t, 3>>{
                  {4096, 6144, 4096}, {4096, 4096, 4096}, {4096, 28672, 4096}, {4096, 4096, 14336}, {512, 4096, 4096}};
    for (const auto& [m, n, k] : gemms) {
      const double bare = bare_gemm_seconds(m, n, k);
      const double eng = engine_gemm_seconds(m, n, k);
      fmt::print("{:>6} {:>6} {:>6} {:>12.1f} {:>12.1f} {:>8.0f} {:>8.3f}\n", m, n, k, bare * 1e6, eng * 1e6,
                 2.0 * static_cast<double>(m * n * k) / eng / 1e12, bare / eng);
    }
    if (devices >= 2) {
      fmt::print("\n# collectives on {} GPUs: engine vs bare NCCL loop (bf16, {} chained)\n", devices, kChain);
      fmt::print("{:>15} {:>10} {:>12} {:>12} {:>8}\n", "collective", "MiB", "bare us", "engine us", "ratio");
      const std::vector<std::int64_t> sizes = quick ? std::vector<std::int64_t>{1 << 20, 64 << 20}
                                                    : std::vector<std::int64_t>{1 << 20, 16 << 20, 256 << 20};
      for (const auto kind : {CollectiveKind::kAllReduce, CollectiveKind::kAllGather, CollectiveKind::kReduceScatter,
                              CollectiveKind::kAllToAll}) {
        for (const auto bytes : sizes) {
          const double bare = bare_collective_seconds(kind, bytes, devices);
          const double eng = engine_collective_seconds(kind, bytes, devices);
          fmt::print("{:>15} {:>10} {:>12.1f} {:>12.1f} {:>8.3f}\n", paratwin::to_string(kind), bytes >> 20, bare * 1e6,
                     eng * 1e6, bare / eng);
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_cuda_backend: {}\n", e.what());
    return 1;
  }
  return 0;
}
