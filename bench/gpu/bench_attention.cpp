// Dense attention speed: cuDNN's fused flash attention (attention_cudnn.hpp; round-robin CP's strided queries as
// diagonal calls, attention_strided.hpp) against the unfused cuBLAS path
// (attention_gemm.hpp) on long-context prefill shapes of Llama-3.1-8B (32 heads, 8 KV heads, head dim 128) and
// DeepSeek's MLA prefill (128 heads, head dims 192/128), bf16, on GPU 0.
//
// FLOPs: 2 · (d_qk + d_v) · heads per visible (query, key) pair, i.e. the two products over the unmasked pairs only
// (a causal square counts n(n+1)/2 pairs). Each time is the median of `runs` launches timed with CUDA events after
// two warm-up launches (the first builds cuDNN's plan). The last column is the relative L2 difference between the
// two paths' outputs, a check that both computed the same attention.
//
// Usage: bench_attention [runs]   (default 10)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/attention_strided.hpp"
#include "backend/cuda/kernels.hpp"

using paratwin::cuda::AttentionArgs;
using i64 = std::int64_t;

namespace {

#define BENCH_CHECK(call)                                                                      \
  do {                                                                                         \
    const cudaError_t bench_err_ = (call);                                                     \
    if (bench_err_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(bench_err_));                 \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (false)

struct Case {
  const char* what;
  i64 q_tokens, kv_tokens, heads, kv_heads, dim_qk, dim_v;
  i64 q_start = 0, kv_start = 0;
  bool causal = true, partial = false;
  i64 q_stride = 1;  ///< round-robin CP: the queries at positions q_start + i · q_stride
};

// (query, key) pairs a causal or full attention computes.
double visible_pairs(const Case& c) {
  if (!c.causal) return static_cast<double>(c.q_tokens) * static_cast<double>(c.kv_tokens);
  double pairs = 0;
  for (i64 i = 0; i < c.q_tokens; ++i) {
    pairs += static_cast<double>(std::clamp<i64>(c.q_start + i * c.q_stride - c.kv_start + 1, 0, c.kv_tokens));
  }
  return pairs;
}

struct Buffer {
  void* ptr = nullptr;
  explicit Buffer(std::size_t bytes) { BENCH_CHECK(cudaMalloc(&ptr, bytes)); }
  ~Buffer() { cudaFree(ptr); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// Median milliseconds of `runs` launches after two warm-ups.
double median_ms(const std::function<void()>& launch, int runs) {
  cudaEvent_t start = nullptr, stop = nullptr;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) launch();
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    BENCH_CHECK(cudaEventRecord(start));
    launch();
    BENCH_CHECK(cudaEventRecord(stop));
    BENCH_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    BENCH_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(static_cast<double>(t));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> to_host(const void* p, std::size_t count, bool fp32) {
  std::vector<float> out(count);
  if (fp32) {
    BENCH_CHECK(cudaMemcpy(out.data(), p, count * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<std::uint16_t> raw(count);
  BENCH_CHECK(cudaMemcpy(raw.data(), p, count * 2, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(raw[i]) << 16;
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
  BENCH_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const auto cudnn_version = paratwin::cuda::CudnnAttention::library_version();
  fmt::print("bench_attention: {} ({} SMs), cuDNN {}.{}.{} loaded, median of {} runs after 2 warm-ups\n", prop.name,
             prop.multiProcessorCount, cudnn_version / 10000, cudnn_version / 100 % 100, cudnn_version % 100, runs);
  fmt::print("FLOPs = 2 * (d_qk + d_v) * heads * visible (query, key) pairs\n\n");

  constexpr i64 k16 = 16384, k32 = 32768;
  const Case cases[] = {
      {"Llama-3.1-8B causal 16K", k16, k16, 32, 8, 128, 128},
      {"Llama-3.1-8B non-causal 16K", k16, k16, 32, 8, 128, 128, 0, 0, false},
      {"Llama-3.1-8B CP chunk: queries 16K..32K over keys 0..32K", k16, k32, 32, 8, 128, 128, k16},
      {"Llama-3.1-8B causal 28,416 (the CP chunk's FLOPs)", 28416, 28416, 32, 8, 128, 128},
      {"Llama-3.1-8B round-robin CP rank 1 of 2: queries 1, 3, ..., 32K-1 over keys 0..32K", k16, k32, 32, 8, 128, 128,
       1, 0, true, false, 2},
      {"Llama-3.1-8B causal 23,170 (the round-robin rank's FLOPs)", 23170, 23170, 32, 8, 128, 128},
      {"Llama-3.1-8B causal 32K", k32, k32, 32, 8, 128, 128},
      {"Llama-3.1-8B ring partial form (fp32 out + lse), causal 16K", k16, k16, 32, 8, 128, 128, 0, 0, true, true},
      {"DeepSeek MLA prefill causal 16K, 128 heads, 192/128", k16, k16, 128, 128, 192, 128},
  };

  paratwin::cuda::CudnnAttention cudnn;
  cublasHandle_t blas = nullptr;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cublasCreate failed\n");
    return 1;
  }
  Buffer workspace(paratwin::cuda::kAttentionWorkspaceBytes);
  fmt::print("| shape | TFLOP | cuDNN ms | cuDNN TFLOP/s | cuBLAS ms | cuBLAS TFLOP/s | speed-up | rel. L2 diff |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  std::uint64_t seed = 1;
  for (const auto& c : cases) {
    const i64 q_cols = c.heads * c.dim_qk, kv_cols = c.kv_heads * (c.dim_qk + c.dim_v), out_cols = c.heads * c.dim_v;
    Buffer q(static_cast<std::size_t>(c.q_tokens * q_cols * 2)), kv(static_cast<std::size_t>(c.kv_tokens * kv_cols * 2));
    paratwin::cuda::launch_fill_random(q.ptr, false, c.q_tokens, q_cols, 0, nullptr, q_cols, ++seed, 1.0f, 0.0f,
                                       nullptr);
    paratwin::cuda::launch_fill_random(kv.ptr, false, c.kv_tokens, kv_cols, 0, nullptr, kv_cols, ++seed, 1.0f, 0.0f,
                                       nullptr);
    const auto out_elems = static_cast<std::size_t>(c.q_tokens * out_cols);
    const std::size_t out_bytes = out_elems * (c.partial ? 4 : 2);
    const auto lse_bytes = static_cast<std::size_t>(c.q_tokens * c.heads * 4);
    Buffer out_cudnn(out_bytes), out_gemm(out_bytes), lse(lse_bytes);
    AttentionArgs a;
    a.q = q.ptr;
    a.k = kv.ptr;
    a.v = static_cast<const char*>(kv.ptr) + c.kv_heads * c.dim_qk * 2;
    a.q_row_stride = q_cols;
    a.k_row_stride = kv_cols;
    a.v_row_stride = kv_cols;
    a.out_row_stride = out_cols;
    a.q_tokens = c.q_tokens;
    a.kv_tokens = c.kv_tokens;
    a.kv_batch_rows = c.kv_tokens;
    a.heads = c.heads;
    a.kv_heads = c.kv_heads;
    a.head_dim_qk = c.dim_qk;
    a.head_dim_v = c.dim_v;
    a.q_start = c.q_start;
    a.q_stride = c.q_stride;
    a.kv_start = c.kv_start;
    a.causal = c.causal;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.dim_qk));
    if (c.partial) a.lse = static_cast<float*>(lse.ptr);
    auto fused = a, unfused = a;
    if (c.partial) {
      fused.out_f32 = static_cast<float*>(out_cudnn.ptr);
      unfused.out_f32 = static_cast<float*>(out_gemm.ptr);
    } else {
      fused.out = out_cudnn.ptr;
      unfused.out = out_gemm.ptr;
    }
    const double tflop = 2.0 * static_cast<double>(c.dim_qk + c.dim_v) * static_cast<double>(c.heads) *
                         visible_pairs(c) * 1e-12;
    std::string cudnn_ms = "declined", cudnn_rate = "-", speedup = "-", diff = "-";
    double fused_ms = 0;
    bool fused_ok = true;
    try {
      fused_ms = median_ms(
          [&] {
            if (!cudnn.run(fused, workspace.ptr, paratwin::cuda::kAttentionWorkspaceBytes, nullptr) &&
                !paratwin::cuda::run_strided_causal_cudnn(cudnn, fused, workspace.ptr,
                                                          paratwin::cuda::kAttentionWorkspaceBytes, nullptr)) {
              fused_ok = false;
            }
          },
          runs);
    } catch (const std::exception& e) {
      fused_ok = false;
      fmt::print(stderr, "{}: {}\n", c.what, e.what());
    }
    if (!fused_ok) fmt::print(stderr, "{}: cuDNN declined: {}\n", c.what, cudnn.declined_reason());
    const double gemm_ms = median_ms(
        [&] {
          paratwin::cuda::attention_gemm(unfused, blas, workspace.ptr, paratwin::cuda::kAttentionWorkspaceBytes,
                                         nullptr);
        },
        runs);
    if (fused_ok) {
      cudnn_ms = fmt::format("{:.2f}", fused_ms);
      cudnn_rate = fmt::format("{:.0f}", tflop / (fused_ms * 1e-3));
      speedup = fmt::format("{:.1f}x", gemm_ms / fused_ms);
      const auto f = to_host(out_cudnn.ptr, out_elems, c.partial);
      const auto g = to_host(out_gemm.ptr, out_elems, c.partial);
      double d = 0, n = 0;
      for (std::size_t i = 0; i < out_elems; ++i) {
        d += (static_cast<double>(f[i]) - g[i]) * (static_cast<double>(f[i]) - g[i]);
        n += static_cast<double>(g[i]) * g[i];
      }
      diff = fmt::format("{:.1e}", std::sqrt(d / std::max(n, 1e-30)));
    }
    fmt::print("| {} | {:.2f} | {} | {} | {:.2f} | {:.0f} | {} | {} |\n", c.what, tflop, cudnn_ms, cudnn_rate, gemm_ms,
               tflop / (gemm_ms * 1e-3), speedup, diff);
    std::fflush(stdout);
  }
  cublasDestroy(blas);
  return 0;
}
