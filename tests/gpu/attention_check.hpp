#pragma once
// Shared by the GPU attention tests: runs one attention shape through a kernel under test and through the backend's
// reference kernel (fp32 online softmax) on the same fresh random inputs, with poisoned outputs (0xFF bytes are NaN
// in bf16 and fp32, so an element the kernel under test never wrote fails the comparison), and compares them.
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/kernels.hpp"
#include "tests/gpu/device_buffer.hpp"
#include "tests/gpu/small_shapes.hpp"

namespace paratwin::cuda::attention_check {

struct Shape {
  const char* what;
  std::int64_t batch, q_tokens, kv_tokens, heads, kv_heads, dim_qk, dim_v;
  std::int64_t q_start = 0, q_stride = 1, kv_start = 0;
  bool causal = true, partial = false;
  std::int64_t kv_stride = 1;
};

inline float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Reads back `count` outputs as floats (bf16 or fp32).
inline std::vector<float> read_back(const void* p, std::size_t count, bool fp32) {
  std::vector<float> out(count);
  if (fp32) {
    REQUIRE(cudaMemcpy(out.data(), p, count * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
    return out;
  }
  std::vector<std::uint16_t> raw(count);
  REQUIRE(cudaMemcpy(raw.data(), p, count * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (std::size_t i = 0; i < count; ++i) out[i] = bf16_to_float(raw[i]);
  return out;
}

/// The kernel under test: enqueues `a` on the default stream with `workspace_bytes` of workspace.
using Kernel = std::function<void(const AttentionArgs& a, void* workspace, std::size_t workspace_bytes)>;

/// Relative L2 error of the output (and the log-sum-exps, −inf exactly where the reference has −inf) against the
/// reference kernel: CHECKs the output within 1e-2 and the log-sum-exps within 2e-2.
/// Under PARATWIN_GPU_TEST_SMALL=1 (tests/gpu/small_shapes.hpp) a shape of more than 4M query·key·head triples is
/// skipped (the CP chunk at offset 1024 and the 1100-query MQA case).
inline void check_against_reference(const Shape& s, std::uint64_t seed, const Kernel& kernel) {
  INFO(s.what);
  const double triples = static_cast<double>(s.batch * s.q_tokens * s.kv_tokens * s.heads);
  if (!test::runs_at_this_size(triples, 4e6)) return;
  const std::int64_t q_rows = s.batch * s.q_tokens, kv_rows = s.batch * s.kv_tokens;
  const std::int64_t q_cols = s.heads * s.dim_qk, kv_cols = s.kv_heads * (s.dim_qk + s.dim_v);
  const std::int64_t out_cols = s.heads * s.dim_v;
  test::DeviceBuffer q(static_cast<std::size_t>(q_rows * q_cols * 2)),
      kv(static_cast<std::size_t>(kv_rows * kv_cols * 2));
  launch_fill_random(q.ptr, false, q_rows, q_cols, 0, nullptr, q_cols, seed, 1.0f, 0.0f, nullptr);
  launch_fill_random(kv.ptr, false, kv_rows, kv_cols, 0, nullptr, kv_cols, seed + 1, 1.0f, 0.0f, nullptr);
  const std::size_t out_elems = static_cast<std::size_t>(q_rows * out_cols);
  const std::size_t out_bytes = out_elems * (s.partial ? 4 : 2);
  const std::size_t lse_elems = static_cast<std::size_t>(q_rows * s.heads);
  test::DeviceBuffer ref_out(out_bytes), got_out(out_bytes), ref_lse(lse_elems * 4), got_lse(lse_elems * 4);
  for (void* p : {ref_out.ptr, got_out.ptr}) REQUIRE(cudaMemset(p, 0xFF, out_bytes) == cudaSuccess);
  for (void* p : {ref_lse.ptr, got_lse.ptr}) REQUIRE(cudaMemset(p, 0xFF, lse_elems * 4) == cudaSuccess);

  AttentionArgs a;
  a.q = q.ptr;
  a.k = kv.ptr;
  a.v = static_cast<const char*>(kv.ptr) + s.kv_heads * s.dim_qk * 2;
  a.q_row_stride = q_cols;
  a.k_row_stride = kv_cols;
  a.v_row_stride = kv_cols;
  a.out_row_stride = out_cols;
  a.batch = s.batch;
  a.q_tokens = s.q_tokens;
  a.kv_tokens = s.kv_tokens;
  a.kv_batch_rows = s.kv_tokens;
  a.heads = s.heads;
  a.kv_heads = s.kv_heads;
  a.head_dim_qk = s.dim_qk;
  a.head_dim_v = s.dim_v;
  a.q_start = s.q_start;
  a.q_stride = s.q_stride;
  a.kv_start = s.kv_start;
  a.kv_stride = s.kv_stride;
  a.causal = s.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(s.dim_qk));
  auto ref = a, got = a;
  if (s.partial) {
    ref.out_f32 = static_cast<float*>(ref_out.ptr);
    ref.lse = static_cast<float*>(ref_lse.ptr);
    got.out_f32 = static_cast<float*>(got_out.ptr);
    got.lse = static_cast<float*>(got_lse.ptr);
  } else {
    ref.out = ref_out.ptr;
    got.out = got_out.ptr;
  }
  launch_attention(ref, nullptr);
  // The workspace starts as NaNs (0xFF bytes) too: a score or probability the kernel reads before writing it fails the
  // check (compute-sanitizer's initcheck flags such reads but cannot tell a cuBLAS GEMM's writes from none, see
  // docs/cuda_backend.md).
  test::DeviceBuffer workspace(kAttentionWorkspaceBytes);
  REQUIRE(cudaMemset(workspace.ptr, 0xFF, kAttentionWorkspaceBytes) == cudaSuccess);
  kernel(got, workspace.ptr, kAttentionWorkspaceBytes);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  const auto r = read_back(ref_out.ptr, out_elems, s.partial);
  const auto g = read_back(got_out.ptr, out_elems, s.partial);
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < out_elems; ++i) {
    REQUIRE(std::isfinite(g[i]));
    diff += (g[i] - r[i]) * static_cast<double>(g[i] - r[i]);
    norm += r[i] * static_cast<double>(r[i]);
  }
  // A shape whose every query sees no key has an all-zero reference: then the output must be zeros too.
  const double rel_l2 = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  INFO("relative L2 " << rel_l2);
  CHECK(rel_l2 < 1e-2);
  if (s.partial) {
    const auto rl = read_back(ref_lse.ptr, lse_elems, true);
    const auto gl = read_back(got_lse.ptr, lse_elems, true);
    for (std::size_t i = 0; i < lse_elems; ++i) {
      INFO("log-sum-exp " << i << ": " << gl[i] << ", reference " << rl[i]);
      if (std::isinf(rl[i])) {
        REQUIRE((std::isinf(gl[i]) && gl[i] < 0));
      } else {
        REQUIRE(std::abs(gl[i] - rl[i]) < 2e-2f);
      }
    }
  }
}

}  // namespace paratwin::cuda::attention_check
