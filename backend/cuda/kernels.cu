// The backend's own kernels: simple, correct, fp32 accumulation. One thread block per row where rows are reduced,
// one warp per (query, head) for attention. The memory-bound layer kernels are in elementwise_kernels.cu.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <climits>
#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;

constexpr int kBlock = 256;

unsigned blocks_for(i64 n, int per_block = kBlock) {
  const i64 b = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

__device__ inline float to_f(bf16 x) {
  return __bfloat162float(x);
}
__device__ inline bf16 to_b(float x) {
  return __float2bfloat16(x);
}

__device__ inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

__global__ void fill_random_kernel(void* dst, bool fp32, i64 rows, i64 cols, i64 row_offset, const int* col_map,
                                   i64 full_cols, std::uint64_t seed, float scale, float bias) {
  const i64 total = rows * cols;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 r = i / cols, c = i % cols;
    const i64 gc = col_map != nullptr ? col_map[c] : c;
    const auto h = mix(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>((row_offset + r) * full_cols + gc));
    const float u = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
    const float v = bias + scale * u;
    if (fp32) {
      static_cast<float*>(dst)[i] = v;
    } else {
      static_cast<bf16*>(dst)[i] = to_b(v);
    }
  }
}

__global__ void fill_random_fp8_kernel(__nv_fp8_e4m3* dst, i64 count, std::uint64_t seed, float scale) {
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const auto h = mix(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i));
    const float u = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
    dst[i] = __nv_fp8_e4m3(scale * u);
  }
}

// Per token t, copies the kv_row elements at kv_offset of its QKV row (its K heads, then its V heads) into row
// dst_rows[t] of dst. T is one bf16, or a 16-byte pack of 8 when every row start is 16-byte aligned (counts then in
// packs): RoPE's op writes the KV cache with it, so it must move its bytes at copy speed.
template <typename T>
__global__ void scatter_kv_kernel(const T* qkv, T* dst, i64 tokens, i64 qkv_row, i64 kv_offset, i64 kv_row,
                                  const int* dst_rows) {
  const i64 total = tokens * kv_row;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 t = i / kv_row, j = i - t * kv_row;
    dst[static_cast<i64>(dst_rows[t]) * kv_row + j] = qkv[t * qkv_row + kv_offset + j];
  }
}

constexpr int kMaxDimsPerLane = 24;  // head dims up to 768

__global__ void attention_kernel(AttentionArgs a) {
  const i64 warp = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const i64 total = a.batch * a.q_tokens * a.heads;
  if (warp >= total) return;
  const i64 h = warp % a.heads;
  const i64 qi = (warp / a.heads) % a.q_tokens;
  const i64 b = warp / (a.heads * a.q_tokens);
  const i64 group = a.heads / a.kv_heads;
  const i64 kvh = h / group;
  const i64 qpos = a.q_start + qi * a.q_stride;
  const bf16* q = static_cast<const bf16*>(a.q) + (b * a.q_tokens + qi) * a.q_row_stride + h * a.head_dim_qk;
  float qv[kMaxDimsPerLane], acc[kMaxDimsPerLane];
  for (int t = 0; t < kMaxDimsPerLane; ++t) {
    const i64 d = lane + 32 * t;
    qv[t] = d < a.head_dim_qk ? to_f(q[d]) * a.scale : 0.0f;
    acc[t] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  const i64 n_keys = a.key_index != nullptr ? a.keys_per_query : a.kv_tokens;
  const int* idx = a.key_index != nullptr ? a.key_index + (b * a.q_tokens + qi) * a.keys_per_query : nullptr;
  for (i64 t = 0; t < n_keys; ++t) {
    const i64 j = idx != nullptr ? idx[t] : t;
    if (j < 0 || j >= a.kv_tokens) continue;
    const i64 kpos = a.kv_start + j * a.kv_stride;
    if (a.causal && kpos > qpos) {
      if (idx == nullptr && a.kv_stride > 0) break;
      continue;
    }
    const i64 row = b * a.kv_batch_rows + j;
    const bf16* k = static_cast<const bf16*>(a.k) + row * a.k_row_stride + kvh * a.head_dim_qk;
    const bf16* v = static_cast<const bf16*>(a.v) + row * a.v_row_stride + kvh * a.head_dim_v;
    float s = 0.0f;
    for (int u = 0; u < kMaxDimsPerLane; ++u) {
      const i64 d = lane + 32 * u;
      if (d < a.head_dim_qk) s += qv[u] * to_f(k[d]);
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float m_new = fmaxf(m, s);
    const float corr = __expf(m - m_new);
    const float p = __expf(s - m_new);
    l = l * corr + p;
    for (int u = 0; u < kMaxDimsPerLane; ++u) {
      const i64 d = lane + 32 * u;
      acc[u] = acc[u] * corr + (d < a.head_dim_v ? p * to_f(v[d]) : 0.0f);
    }
    m = m_new;
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const i64 out_at = (b * a.q_tokens + qi) * a.out_row_stride + h * a.head_dim_v;
  if (a.out_f32 != nullptr) {
    for (int u = 0; u < kMaxDimsPerLane; ++u) {
      const i64 d = lane + 32 * u;
      if (d < a.head_dim_v) a.out_f32[out_at + d] = acc[u] * inv;
    }
    if (lane == 0 && a.lse != nullptr) a.lse[warp] = l > 0.0f ? m + __logf(l) : -INFINITY;
    return;
  }
  bf16* out = static_cast<bf16*>(a.out) + out_at;
  for (int u = 0; u < kMaxDimsPerLane; ++u) {
    const i64 d = lane + 32 * u;
    if (d < a.head_dim_v) out[d] = to_b(acc[u] * inv);
  }
}

// One block per row: max, then sum of exponentials, then the normalized probabilities.
__global__ void masked_softmax_kernel(const float* scores, bf16* probs, i64 q_rows, i64 kv_len, i64 ld, i64 h0, i64 q0,
                                      i64 batch_index, AttentionArgs a) {
  const i64 r = blockIdx.x;
  const i64 head = h0 + r / q_rows;
  const i64 query = q0 + r % q_rows;
  const i64 qpos = a.q_start + query * a.q_stride;
  const float* s = scores + r * ld;
  bf16* p = probs + r * ld;
  // Keys j < visible are the ones this query sees (kv positions increase with j).
  i64 visible = kv_len;
  if (a.causal) {
    if (a.kv_stride <= 0 || qpos < a.kv_start) {
      visible = qpos < a.kv_start ? 0 : kv_len;
    } else {
      const i64 last = (qpos - a.kv_start) / a.kv_stride;
      visible = last + 1 < kv_len ? last + 1 : kv_len;
    }
  }
  __shared__ float partial[32];
  const auto block_reduce = [&](float v, bool is_max) {
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    const int warps = static_cast<int>(blockDim.x / 32);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    return v;
  };
  float m = -INFINITY;
  for (i64 j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, s[j]);
  m = block_reduce(m, true);
  float sum = 0.0f;
  for (i64 j = threadIdx.x; j < visible; j += blockDim.x) sum += __expf(s[j] - m);
  sum = block_reduce(sum, false);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (i64 j = threadIdx.x; j < kv_len; j += blockDim.x) p[j] = to_b(j < visible ? __expf(s[j] - m) * inv : 0.0f);
  if (threadIdx.x == 0 && a.lse != nullptr) {
    a.lse[(batch_index * a.q_tokens + query) * a.heads + head] = sum > 0.0f ? m + __logf(sum) : -INFINITY;
  }
}

// One thread per (row, element), for dims that are not a multiple of 4 or unaligned buffers: the weights of the two
// sides recomputed per element.
__global__ void attention_merge_kernel(float* run_out, float* run_lse, const float* part_out, const float* part_lse,
                                       i64 rows, i64 dim, bool first) {
  const i64 total = rows * dim;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 r = i / dim;
    const float lp = part_lse[r];
    float merged = part_out[i];
    if (!first) {
      const float lr = run_lse[r];
      const float mx = fmaxf(lr, lp);
      if (mx == -INFINITY) {
        merged = 0.0f;
      } else {
        const float wr = __expf(lr - mx), wp = __expf(lp - mx);
        merged = (run_out[i] * wr + part_out[i] * wp) / (wr + wp);
      }
    }
    run_out[i] = merged;
  }
}

// The merge four elements per thread (dim a multiple of 4, the buffers 16-byte aligned: the engine's head dims and
// pool buffers), the two sides' weights computed once per vector. With the per-element form above, a ring merge op of
// Llama-3.1-8B 32K at CP = 2 moved its 805 MB at 1.1-1.4 TB/s (docs/performance.md).
__global__ void attention_merge_vec4_kernel(float4* run_out, const float* run_lse, const float4* part_out,
                                            const float* part_lse, i64 rows, i64 dim, bool first) {
  const i64 vectors = rows * dim / 4;
  for (i64 v = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; v < vectors;
       v += static_cast<i64>(gridDim.x) * blockDim.x) {
    const float4 p = part_out[v];
    if (first) {  // the running state holds nothing yet: not read
      run_out[v] = p;
      continue;
    }
    const i64 r = v * 4 / dim;
    const float lr = run_lse[r], lp = part_lse[r];
    const float mx = fmaxf(lr, lp);
    if (mx == -INFINITY) {  // neither side saw a key
      run_out[v] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      continue;
    }
    const float er = __expf(lr - mx), ep = __expf(lp - mx);
    const float wr = er / (er + ep), wp = ep / (er + ep);
    const float4 o = run_out[v];
    run_out[v] = make_float4(o.x * wr + p.x * wp, o.y * wr + p.y * wp, o.z * wr + p.z * wp, o.w * wr + p.w * wp);
  }
}

__global__ void to_bf16_kernel(const float* src, bf16* dst, i64 count) {
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    dst[i] = to_b(src[i]);
  }
}

// Four elements per thread: a float4 in, two bf16 pairs (8 bytes) out.
__global__ void to_bf16_vec4_kernel(const float4* src, uint2* dst, i64 vectors) {
  for (i64 v = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; v < vectors;
       v += static_cast<i64>(gridDim.x) * blockDim.x) {
    const float4 x = src[v];
    const __nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
    dst[v] = make_uint2(*reinterpret_cast<const unsigned*>(&lo), *reinterpret_cast<const unsigned*>(&hi));
  }
}

bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// Separate pass so that every element of a row read the row's old log-sum-exp before it changes.
__global__ void attention_merge_lse_kernel(float* run_lse, const float* part_lse, i64 rows, bool first) {
  for (i64 r = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<i64>(gridDim.x) * blockDim.x) {
    const float lp = part_lse[r];
    if (first) {
      run_lse[r] = lp;
      continue;
    }
    const float lr = run_lse[r];
    const float mx = fmaxf(lr, lp);
    run_lse[r] = mx == -INFINITY ? -INFINITY : mx + __logf(__expf(lr - mx) + __expf(lp - mx));
  }
}

__global__ void wait_flag_kernel(const volatile int* flag, int value, i64 timeout_ns) {
  unsigned long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    if (*flag == value) return;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<i64>(now - start) < timeout_ns);
}

template <typename T>
__global__ void gather_rows_kernel(const T* src, T* dst, i64 rows, i64 row_elems, const int* map) {
  const i64 total = rows * row_elems;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 r = i / row_elems, j = i % row_elems;
    const i64 s = map != nullptr ? map[r] : r;
    dst[i] = s >= 0 ? src[s * row_elems + j] : T{};
  }
}

constexpr int kMaxTopK = 32;

// A router logit as both router kernels rank and weight it: NaN is -inf, so a NaN expert is never chosen before a
// finite one, gets weight 0 when it fills a slot, and every comparison has one answer (NaN compares false both ways:
// the warp kernel's lanes disagreed on the winner and wrote ids [0, -1] for logits [NaN, 1.0]).
__device__ inline float route_logit(bf16 x) {
  const float v = to_f(x);
  return isnan(v) ? -INFINITY : v;
}

__global__ void moe_route_kernel(const bf16* logits, int* ids, float* weights, i64 tokens, i64 experts, i64 topk,
                                 bool sigmoid) {
  const i64 t = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const bf16* row = logits + t * experts;
  float mx = -FLT_MAX;
  for (i64 e = 0; e < experts; ++e) mx = fmaxf(mx, route_logit(row[e]));
  float denom = 0.0f;
  if (!sigmoid) {
    for (i64 e = 0; e < experts; ++e) denom += __expf(route_logit(row[e]) - mx);
  }
  int chosen[kMaxTopK];
  float score[kMaxTopK];
  for (i64 k = 0; k < topk; ++k) {
    int best = -1;
    float best_v = -FLT_MAX;
    for (i64 e = 0; e < experts; ++e) {
      bool taken = false;
      for (i64 p = 0; p < k; ++p) taken |= chosen[p] == e;
      const float v = route_logit(row[e]);
      if (!taken && (best < 0 || v > best_v)) {
        best = static_cast<int>(e);
        best_v = v;
      }
    }
    chosen[k] = best;
    score[k] = sigmoid ? 1.0f / (1.0f + __expf(-best_v)) : __expf(best_v - mx) / denom;
  }
  for (i64 k = 0; k < topk; ++k) {
    ids[t * topk + k] = chosen[k];
    weights[t * topk + k] = score[k];
  }
}

// The router with a warp per token: lane l holds experts l, l + 32, ... of the token's row (the warp's loads are
// consecutive), and the maximum, the softmax denominator and each top-k round are warp reductions. The thread-per-token
// kernel above read its row one scalar at a time, each thread its own row (no two loads of a warp in one transaction),
// and scanned it topk times: 219 µs for 8,192 tokens × 128 experts on H200, ~100 × the roofline of the row's bytes.
// Same choices as that kernel, which stays for rows of more than kRouteExpertsPerLane · 32 experts: the top-k by logit
// (softmax and sigmoid are monotonic), the lowest expert among equal logits, -1 and a zero weight where the row has
// fewer experts than topk, NaN ranked as -inf (route_logit): the lanes' (value, expert) order is then total, so the
// butterfly reduction leaves every lane with the same winner.
constexpr int kRouteExpertsPerLane = 16;  // rows of up to 512 experts

struct RouteCandidate {
  float value;
  int expert;  // INT_MAX: none (every expert of the lane taken)
};

__device__ inline bool route_beats(const RouteCandidate& a, const RouteCandidate& b) {
  if (a.expert == INT_MAX) return false;
  if (b.expert == INT_MAX) return true;
  return a.value > b.value || (a.value == b.value && a.expert < b.expert);
}

__global__ void moe_route_warp_kernel(const bf16* logits, int* ids, float* weights, i64 tokens, int experts, int topk,
                                      bool sigmoid) {
  const i64 t = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  if (t >= tokens) return;  // whole warps leave together: blocks are whole warps
  const int lane = static_cast<int>(threadIdx.x % 32);
  const bf16* row = logits + t * experts;
  float v[kRouteExpertsPerLane];
  unsigned available = 0;  // bit i: expert lane + 32·i exists and is not chosen yet
  float mx = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kRouteExpertsPerLane; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < experts ? route_logit(row[e]) : -FLT_MAX;
    if (e < experts) {
      available |= 1u << i;
      mx = fmaxf(mx, v[i]);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float denom = 0.0f;
  if (!sigmoid) {
#pragma unroll
    for (int i = 0; i < kRouteExpertsPerLane; ++i) {
      if ((available >> i) & 1u) denom += __expf(v[i] - mx);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) denom += __shfl_xor_sync(0xffffffffu, denom, o);
  }
  for (int k = 0; k < topk; ++k) {
    RouteCandidate best{-FLT_MAX, INT_MAX};
#pragma unroll
    for (int i = 0; i < kRouteExpertsPerLane; ++i) {  // ascending experts: strict > keeps the lowest of equal logits
      if (((available >> i) & 1u) && (best.expert == INT_MAX || v[i] > best.value)) best = {v[i], lane + 32 * i};
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const RouteCandidate other{__shfl_xor_sync(0xffffffffu, best.value, o),
                                 __shfl_xor_sync(0xffffffffu, best.expert, o)};
      if (route_beats(other, best)) best = other;
    }
    if (best.expert != INT_MAX && lane == best.expert % 32) available &= ~(1u << (best.expert / 32));
    if (lane == 0) {
      const float x = best.value;
      ids[t * topk + k] = best.expert == INT_MAX ? -1 : best.expert;
      weights[t * topk + k] = sigmoid ? 1.0f / (1.0f + __expf(-x)) : __expf(x - mx) / denom;
    }
  }
}

__global__ void moe_route_fixed_kernel(const float* logits, const int* ids, float* weights, i64 tokens, i64 experts,
                                       i64 topk, bool renormalize) {
  const i64 t = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  const float* row = logits + t * experts;
  const int* id = ids + t * topk;
  float mx = -FLT_MAX;
  if (renormalize) {
    for (i64 k = 0; k < topk; ++k) mx = fmaxf(mx, row[id[k]]);
  } else {
    for (i64 e = 0; e < experts; ++e) mx = fmaxf(mx, row[e]);
  }
  float denom = 0.0f;
  if (renormalize) {
    for (i64 k = 0; k < topk; ++k) denom += __expf(row[id[k]] - mx);
  } else {
    for (i64 e = 0; e < experts; ++e) denom += __expf(row[e] - mx);
  }
  for (i64 k = 0; k < topk; ++k) weights[t * topk + k] = __expf(row[id[k]] - mx) / denom;
}

}  // namespace

void launch_fill_random(void* dst, bool fp32, i64 rows, i64 cols, i64 row_offset, const int* col_map, i64 full_cols,
                        std::uint64_t seed, float scale, float bias, cudaStream_t stream) {
  if (rows * cols == 0) return;
  fill_random_kernel<<<blocks_for(rows * cols), kBlock, 0, stream>>>(dst, fp32, rows, cols, row_offset, col_map,
                                                                     full_cols, seed, scale, bias);
}

void launch_fill_random_fp8(void* dst, i64 count, std::uint64_t seed, float scale, cudaStream_t stream) {
  if (count == 0) return;
  fill_random_fp8_kernel<<<blocks_for(count), kBlock, 0, stream>>>(static_cast<__nv_fp8_e4m3*>(dst), count, seed,
                                                                   scale);
}

void launch_scatter_kv(const void* qkv, void* dst, i64 tokens, i64 q_heads, i64 kv_heads, i64 head_dim,
                       const int* dst_rows, cudaStream_t stream) {
  const i64 kv_row = 2 * kv_heads * head_dim, qkv_row = (q_heads + 2 * kv_heads) * head_dim;
  const i64 kv_offset = q_heads * head_dim;
  if (tokens * kv_row == 0) return;
  constexpr i64 kPack = 8;  // bf16 per uint4
  const bool packed = kv_row % kPack == 0 && qkv_row % kPack == 0 && kv_offset % kPack == 0 &&
                      reinterpret_cast<std::uintptr_t>(qkv) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(dst) % 16 == 0;
  if (packed) {
    scatter_kv_kernel<<<blocks_for(tokens * kv_row / kPack), kBlock, 0, stream>>>(
        static_cast<const uint4*>(qkv), static_cast<uint4*>(dst), tokens, qkv_row / kPack, kv_offset / kPack,
        kv_row / kPack, dst_rows);
  } else {
    scatter_kv_kernel<<<blocks_for(tokens * kv_row), kBlock, 0, stream>>>(
        static_cast<const bf16*>(qkv), static_cast<bf16*>(dst), tokens, qkv_row, kv_offset, kv_row, dst_rows);
  }
}

void launch_attention(const AttentionArgs& a, cudaStream_t stream) {
  const i64 warps = a.batch * a.q_tokens * a.heads;
  if (warps == 0) return;
  attention_kernel<<<blocks_for(warps * 32, 128), 128, 0, stream>>>(a);
}

void launch_masked_softmax(const float* scores, void* probs, i64 rows, i64 q_rows, i64 kv_len, i64 ld, i64 h0, i64 q0,
                           i64 batch_index, const AttentionArgs& a, cudaStream_t stream) {
  if (rows == 0 || kv_len == 0) return;
  masked_softmax_kernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(scores, static_cast<bf16*>(probs), q_rows,
                                                                         kv_len, ld, h0, q0, batch_index, a);
}

void launch_attention_merge(float* running_out, float* running_lse, const float* part_out, const float* part_lse,
                            i64 rows, i64 dim, bool first, cudaStream_t stream) {
  if (rows * dim == 0) return;
  if (dim % 4 == 0 && aligned16(running_out) && aligned16(part_out)) {
    attention_merge_vec4_kernel<<<blocks_for(rows * dim / 4), kBlock, 0, stream>>>(
        reinterpret_cast<float4*>(running_out), running_lse, reinterpret_cast<const float4*>(part_out), part_lse, rows,
        dim, first);
  } else {
    attention_merge_kernel<<<blocks_for(rows * dim), kBlock, 0, stream>>>(running_out, running_lse, part_out,
                                                                          part_lse, rows, dim, first);
  }
  attention_merge_lse_kernel<<<blocks_for(rows), kBlock, 0, stream>>>(running_lse, part_lse, rows, first);
}

void launch_to_bf16(const float* src, void* dst, i64 count, cudaStream_t stream) {
  if (count == 0) return;
  if (count % 4 == 0 && aligned16(src) && reinterpret_cast<std::uintptr_t>(dst) % 8 == 0) {
    to_bf16_vec4_kernel<<<blocks_for(count / 4), kBlock, 0, stream>>>(reinterpret_cast<const float4*>(src),
                                                                      static_cast<uint2*>(dst), count / 4);
    return;
  }
  to_bf16_kernel<<<blocks_for(count), kBlock, 0, stream>>>(src, static_cast<bf16*>(dst), count);
}

void launch_wait_flag(const volatile int* flag, int value, i64 timeout_ns, cudaStream_t stream) {
  wait_flag_kernel<<<1, 1, 0, stream>>>(flag, value, timeout_ns);
}

void launch_gather_rows(const void* src, void* dst, i64 rows, i64 row_bytes, const int* map, cudaStream_t stream) {
  if (rows * row_bytes == 0) return;
  if (row_bytes % 16 == 0) {
    gather_rows_kernel<<<blocks_for(rows * row_bytes / 16), kBlock, 0, stream>>>(
        static_cast<const uint4*>(src), static_cast<uint4*>(dst), rows, row_bytes / 16, map);
  } else if (row_bytes % 2 == 0) {
    gather_rows_kernel<<<blocks_for(rows * row_bytes / 2), kBlock, 0, stream>>>(
        static_cast<const std::uint16_t*>(src), static_cast<std::uint16_t*>(dst), rows, row_bytes / 2, map);
  } else {
    gather_rows_kernel<<<blocks_for(rows * row_bytes), kBlock, 0, stream>>>(
        static_cast<const std::uint8_t*>(src), static_cast<std::uint8_t*>(dst), rows, row_bytes, map);
  }
}

void launch_moe_route(const void* logits, int* ids, float* weights, i64 tokens, i64 experts, i64 topk, bool sigmoid,
                      cudaStream_t stream) {
  if (tokens == 0) return;
  const i64 k = topk < kMaxTopK ? topk : kMaxTopK;
  if (experts <= 32 * kRouteExpertsPerLane) {
    constexpr int kTokensPerBlock = 4;  // a warp each
    moe_route_warp_kernel<<<blocks_for(tokens, kTokensPerBlock), 32 * kTokensPerBlock, 0, stream>>>(
        static_cast<const bf16*>(logits), ids, weights, tokens, static_cast<int>(experts), static_cast<int>(k),
        sigmoid);
    return;
  }
  moe_route_kernel<<<blocks_for(tokens, 128), 128, 0, stream>>>(static_cast<const bf16*>(logits), ids, weights, tokens,
                                                                experts, k, sigmoid);
}

void launch_moe_route_fixed(const float* logits, const int* ids, float* weights, i64 tokens, i64 experts, i64 topk,
                            bool renormalize, cudaStream_t stream) {
  if (tokens == 0) return;
  moe_route_fixed_kernel<<<blocks_for(tokens, 128), 128, 0, stream>>>(logits, ids, weights, tokens, experts, topk,
                                                                      renormalize);
}

}  // namespace paratwin::cuda
