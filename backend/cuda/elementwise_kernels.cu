// The layer's memory-bound kernels (RMSNorm, RoPE, SwiGLU, residual add, MoE unpermute and combine), written to move
// their bytes at HBM speed (issue 6: ≥ 80 % of the device-to-device copy bandwidth):
// - 16-byte loads and stores of 8 bf16 (Pack<8>) wherever the data allows it: every row start 16-byte aligned and every
//   row length a multiple of 8. Anything else (ragged sizes, unaligned pointers) runs the same kernel one element per
//   access (Pack<1>), so both paths share one body and one semantics.
// - Several independent loads issued before their first use, so each SM keeps enough bytes in flight.
// - RMSNorm holds its row in registers: one read of HBM, the sum of squares, then the scaled write. The fused residual
//   add + RMSNorm (SGLang's fused_add_rmsnorm) is the same kernel reading a second row and writing the sum back first.
// - RoPE's angles depend on (token, dim) only: each thread computes the sines and cosines of its 8 dims once and
//   applies them to several heads of the token.
// Math is fp32 with the same operation order as the reference kernels they replaced; outputs round to nearest bf16.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;

constexpr int kBlock = 256;
constexpr int kVecElems = 8;  // bf16 per 16-byte access

unsigned grid_for(i64 items, i64 per_block) {
  const i64 b = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// Whether [a, a + bytes) and [b, b + bytes) share a byte.
bool byte_ranges_overlap(const void* a, const void* b, i64 bytes) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  const auto len = static_cast<std::uintptr_t>(bytes);
  return bytes > 0 && pa < pb + len && pb < pa + len;
}

// a / b, with the 32-bit divide when both fit (a 64-bit divide is a long software routine on the GPU).
__device__ inline i64 div_index(i64 a, i64 b) {
  return ((a | b) >> 32) == 0 ? static_cast<i64>(static_cast<unsigned>(a) / static_cast<unsigned>(b)) : a / b;
}

// kElems consecutive bf16 moved in one access; converted to and from fp32 in registers.
template <int kElems>
struct Pack;

template <>
struct Pack<8> {
  uint4 raw;
  __device__ void load(const bf16* p) { raw = *reinterpret_cast<const uint4*>(p); }
  __device__ void store(bf16* p) const { *reinterpret_cast<uint4*>(p) = raw; }
  __device__ void to_float(float (&v)[8]) const {
    const auto* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
  }
  __device__ void from_float(const float (&v)[8]) {
    auto* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  }
};

template <>
struct Pack<1> {
  bf16 raw;
  __device__ void load(const bf16* p) { raw = *p; }
  __device__ void store(bf16* p) const { *p = raw; }
  __device__ void to_float(float (&v)[1]) const { v[0] = __bfloat162float(raw); }
  __device__ void from_float(const float (&v)[1]) { raw = __float2bfloat16(v[0]); }
};

// a = bf16(a + b), element by element in fp32 (the residual add, fused or not).
template <int N>
__device__ inline void add_in_place(Pack<N>& a, const Pack<N>& b) {
  float av[N], bv[N];
  a.to_float(av);
  b.to_float(bv);
#pragma unroll
  for (int e = 0; e < N; ++e) av[e] += bv[e];
  a.from_float(av);
}

// ---------------------------------------------------------------------------------------------------------------
// RMSNorm

// launch_rmsnorm's row addressing (kernels.hpp).
struct NormRows {
  const bf16* in;
  bf16* out;
  i64 n, inner, outer_stride;
  const int* row_map;
  __device__ const bf16* src(i64 r) const {
    const i64 s = row_map != nullptr ? row_map[r] : r;
    return in + div_index(s, inner) * outer_stride + (s - div_index(s, inner) * inner) * n;
  }
  __device__ bf16* dst(i64 r, const bf16* x) const { return out == in ? const_cast<bf16*>(x) : out + r * n; }
};

// The fused add's second operand: row r of the update is update + r·n (plain rows; `in` is then the residual, written
// with the sum). Unused (null) by the plain norm.
struct AddRows {
  const bf16* update;
  __device__ const bf16* row(i64 r, i64 n) const { return update + r * n; }
};

__device__ float block_sum_f32(float v) {
  __shared__ float partial[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>((blockDim.x + 31) / 32);
  v = lane < warps ? partial[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;  // every warp reduced the same partials; no second barrier: each kernel calls this once per block
}

// Sum of squares of the packs a thread holds, then the scaled write: the row is read from memory once. Packs
// first, first + step, ... of a row of `packs` (≤ kVecs · 1024, so int indices). The weight is read after the
// reduction: variants that loaded it with the row measured 5–20 % slower on H200 at 2 row packs per thread, and
// 0.58–0.70 of copy against 0.70–0.90 at 4 (docs/performance.md).
template <int kElems, int kVecs>
struct RowSlice {
  Pack<kElems> x[kVecs];
  __device__ float load(const bf16* row, int first, int step, int packs) {
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int j = first + k * step;
      if (j < packs) x[k].load(row + j * kElems);
    }
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      if (first + k * step < packs) {
        float v[kElems];
        x[k].to_float(v);
#pragma unroll
        for (int e = 0; e < kElems; ++e) ss += v[e] * v[e];
      }
    }
    return ss;
  }
  // The fused add: residual row += update row, rounded to bf16 and written back at once; the sum of squares is taken
  // on the rounded sum, the value the residual stream keeps (as SGLang's fused_add_rmsnorm does), so the normed
  // output is the plain norm of the new residual. All loads of both rows are issued before the first use.
  __device__ float load_add(bf16* row, const bf16* update, int first, int step, int packs) {
    Pack<kElems> u[kVecs];
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int j = first + k * step;
      if (j < packs) {
        x[k].load(row + j * kElems);
        u[k].load(update + j * kElems);
      }
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int j = first + k * step;
      if (j < packs) {
        add_in_place(x[k], u[k]);
        x[k].store(row + j * kElems);
        float v[kElems];
        x[k].to_float(v);
#pragma unroll
        for (int e = 0; e < kElems; ++e) ss += v[e] * v[e];
      }
    }
    return ss;
  }
  // load, or load_add when the kernel fuses the add (row r of `add`).
  template <bool kAdd>
  __device__ float read(const NormRows& a, const AddRows& add, i64 r, const bf16* x_row, int first, int step,
                        int packs) {
    if constexpr (kAdd) {
      return load_add(const_cast<bf16*>(x_row), add.row(r, a.n), first, step, packs);
    } else {
      return load(x_row, first, step, packs);
    }
  }
  __device__ void store(bf16* row, const bf16* weight, float inv, int first, int step, int packs) const {
#pragma unroll
    for (int k = 0; k < kVecs; ++k) {
      const int j = first + k * step;
      if (j >= packs) continue;
      Pack<kElems> w;
      w.load(weight + j * kElems);
      float v[kElems], wv[kElems];
      x[k].to_float(v);
      w.to_float(wv);
#pragma unroll
      for (int e = 0; e < kElems; ++e) v[e] = v[e] * inv * wv[e];
      Pack<kElems> y;
      y.from_float(v);
      y.store(row + j * kElems);
    }
  }
};

// Short rows: kLanes lanes of a warp per row (several rows per warp when kLanes < 32).
template <int kLanes, int kVecs, bool kAdd>
__global__ void rmsnorm_rows_in_warp_kernel(NormRows a, AddRows add, const bf16* weight, i64 rows, float eps) {
  const i64 r = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / kLanes;
  const int lane = static_cast<int>(threadIdx.x % kLanes);
  const bool valid = r < rows;  // no early return: the whole warp takes part in the shuffles
  const int packs = static_cast<int>(a.n / kVecElems);
  const bf16* x = valid ? a.src(r) : nullptr;
  RowSlice<kVecElems, kVecs> slice;
  float ss = valid ? slice.template read<kAdd>(a, add, r, x, lane, kLanes, packs) : 0.0f;
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (!valid) return;
  const float inv = rsqrtf(ss / static_cast<float>(a.n) + eps);
  slice.store(a.dst(r, x), weight, inv, lane, kLanes, packs);
}

// Long rows: one block per row, each thread holding up to kVecs packs. Measured no faster on H200
// (docs/performance.md): 2 packs per thread (within noise) and blocks that loop over rows with the next row's loads in
// flight during the current row's reduction (0.03–0.09 of copy slower).
constexpr int kMaxNormThreads = 1024;  // the row-per-block launch picks up to this many threads

template <int kElems, int kVecs, bool kAdd>
__global__ void __launch_bounds__(kMaxNormThreads)
    rmsnorm_row_per_block_kernel(NormRows a, AddRows add, const bf16* weight, float eps) {
  const i64 r = blockIdx.x;
  const int packs = static_cast<int>(a.n / kElems);
  const int first = static_cast<int>(threadIdx.x), step = static_cast<int>(blockDim.x);
  const bf16* x = a.src(r);
  RowSlice<kElems, kVecs> slice;
  const float ss = block_sum_f32(slice.template read<kAdd>(a, add, r, x, first, step, packs));
  const float inv = rsqrtf(ss / static_cast<float>(a.n) + eps);
  slice.store(a.dst(r, x), weight, inv, first, step, packs);
}

// Rows too long for registers (> 8192 ragged or > 32768 aligned elements: 8 packs per thread would spill at 1024
// threads): two passes over memory, the second mostly from L2. The fused add writes the rounded sum in the first.
template <bool kAdd>
__global__ void rmsnorm_streaming_kernel(NormRows a, AddRows add, const bf16* weight, float eps) {
  const i64 r = blockIdx.x;
  const bf16* x = a.src(r);
  bf16* y = a.dst(r, x);
  float ss = 0;
  for (i64 j = threadIdx.x; j < a.n; j += blockDim.x) {
    float v = __bfloat162float(x[j]);
    if constexpr (kAdd) {
      const bf16 sum = __float2bfloat16(v + __bfloat162float(add.row(r, a.n)[j]));
      const_cast<bf16*>(x)[j] = sum;
      v = __bfloat162float(sum);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum_f32(ss) / static_cast<float>(a.n) + eps);
  for (i64 j = threadIdx.x; j < a.n; j += blockDim.x) {
    y[j] = __float2bfloat16(__bfloat162float(x[j]) * inv * __bfloat162float(weight[j]));
  }
}

template <int kLanes, int kVecs, bool kAdd>
void launch_rows_in_warp(const NormRows& a, const AddRows& add, const bf16* weight, i64 rows, float eps,
                         cudaStream_t stream) {
  rmsnorm_rows_in_warp_kernel<kLanes, kVecs, kAdd>
      <<<grid_for(rows, kBlock / kLanes), kBlock, 0, stream>>>(a, add, weight, rows, eps);
}

template <int kElems, int kVecs, bool kAdd>
void launch_row_per_block(const NormRows& a, const AddRows& add, const bf16* weight, i64 rows, float eps,
                          cudaStream_t stream) {
  const i64 threads_needed = (a.n / kElems + kVecs - 1) / kVecs;
  const unsigned threads = static_cast<unsigned>(std::max<i64>((threads_needed + 31) / 32 * 32, 32));
  rmsnorm_row_per_block_kernel<kElems, kVecs, kAdd>
      <<<static_cast<unsigned>(rows), threads, 0, stream>>>(a, add, weight, eps);
}

// The norm's (or fused add + norm's) launch by row length: lanes of a warp per row for short rows, a block per row,
// or two streaming passes for rows too long for registers. `vectors`: every row start 16-byte aligned, n % 8 = 0.
template <bool kAdd>
void launch_norm(const NormRows& a, const AddRows& add, const bf16* w, i64 rows, bool vectors, float eps,
                 cudaStream_t stream) {
  const i64 n = a.n;
  const i64 packs = n / kVecElems;
  if (vectors && packs <= 8) {
    launch_rows_in_warp<8, 1, kAdd>(a, add, w, rows, eps, stream);
  } else if (vectors && packs <= 16) {
    launch_rows_in_warp<16, 1, kAdd>(a, add, w, rows, eps, stream);
  } else if (vectors && packs <= 32) {
    launch_rows_in_warp<32, 1, kAdd>(a, add, w, rows, eps, stream);
  } else if (vectors && packs <= 64) {
    launch_rows_in_warp<32, 2, kAdd>(a, add, w, rows, eps, stream);
  } else if (vectors && packs <= 128) {
    launch_rows_in_warp<32, 4, kAdd>(a, add, w, rows, eps, stream);
  } else if (vectors && packs <= kMaxNormThreads * 4) {
    launch_row_per_block<kVecElems, 4, kAdd>(a, add, w, rows, eps, stream);
  } else if (!vectors && n <= kMaxNormThreads * 8) {
    launch_row_per_block<1, 8, kAdd>(a, add, w, rows, eps, stream);
  } else {
    rmsnorm_streaming_kernel<kAdd><<<static_cast<unsigned>(rows), kBlock, 0, stream>>>(a, add, w, eps);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// RoPE

// Blocks of `threads` of `kernel` that the current GPU holds at once; `fallback` if the runtime cannot tell (these
// launchers report errors through the stream, like every kernel launch, not by throwing).
template <typename Kernel>
i64 resident_blocks(Kernel kernel, unsigned threads, i64 fallback) {
  int device = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, static_cast<int>(threads), 0) != cudaSuccess ||
      sms * per_sm == 0) {
    return fallback;
  }
  return i64{sms} * per_sm;
}

// Heads of one token a thread rotates with the same angles (the sines and cosines are computed once for them): 8, or
// 4 where that fills the GPU's last wave of blocks better (launch_rope_packs).
constexpr i64 kRopeHeadsPerThread = 8;
// Heads whose loads are issued together; with 3 blocks of 256 per SM (80 registers, no spills) that is 96 KiB in
// flight per SM.
constexpr int kRopeHeadsInFlight = 4;

// Thread i handles dims [c·kElems, (c+1)·kElems) of the first half (and their partners in the second half) of heads
// g, g + groups, ... of token t; consecutive threads take consecutive c, then g, so a warp reads whole head rows.
template <int kElems>
__global__ void __launch_bounds__(kBlock, 3) rope_kernel(bf16* x, i64 tokens, i64 heads, i64 head_dim, i64 row_stride,
                                                         const int* positions, float theta, i64 groups) {
  const i64 half = head_dim / 2;
  const i64 chunks = half / kElems;
  const i64 total = tokens * groups * chunks;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 tg = div_index(i, chunks);
    const i64 c = i - tg * chunks;
    const i64 t = div_index(tg, groups);
    const i64 g = tg - t * groups;
    const float pos = static_cast<float>(positions != nullptr ? positions[t] : t);
    float cs[kElems], sn[kElems];
#pragma unroll
    for (int e = 0; e < kElems; ++e) {
      const i64 d = c * kElems + e;
      const float freq = powf(theta, -2.0f * static_cast<float>(d) / static_cast<float>(head_dim));
      sincosf(pos * freq, &sn[e], &cs[e]);
    }
    bf16* row = x + t * row_stride + c * kElems;
    for (i64 h0 = g; h0 < heads; h0 += kRopeHeadsInFlight * groups) {
      Pack<kElems> lo[kRopeHeadsInFlight], hi[kRopeHeadsInFlight];
#pragma unroll
      for (int u = 0; u < kRopeHeadsInFlight; ++u) {
        const i64 h = h0 + u * groups;
        if (h < heads) {
          lo[u].load(row + h * head_dim);
          hi[u].load(row + h * head_dim + half);
        }
      }
#pragma unroll
      for (int u = 0; u < kRopeHeadsInFlight; ++u) {
        const i64 h = h0 + u * groups;
        if (h >= heads) continue;
        float a[kElems], b[kElems];
        lo[u].to_float(a);
        hi[u].to_float(b);
        float ra[kElems], rb[kElems];
#pragma unroll
        for (int e = 0; e < kElems; ++e) {
          ra[e] = a[e] * cs[e] - b[e] * sn[e];
          rb[e] = b[e] * cs[e] + a[e] * sn[e];
        }
        lo[u].from_float(ra);
        hi[u].from_float(rb);
        lo[u].store(row + h * head_dim);
        hi[u].store(row + h * head_dim + half);
      }
    }
  }
}

// Fraction of the last wave's block slots that `blocks` fill when `resident` blocks run at once, counted over the
// whole launch: blocks / (waves · resident). At 8K tokens of DeepSeek-V3.2 (128 heads of 64) 8 heads per thread make
// 2,048 blocks, 5.2 waves on an H200: the sixth wave runs a sixth full, and the launch takes 6 waves' time for 5.2.
double wave_fill(i64 blocks, i64 resident) {
  const i64 waves = (blocks + resident - 1) / resident;
  return static_cast<double>(blocks) / static_cast<double>(waves * resident);
}

template <int kElems>
void launch_rope_packs(bf16* x, i64 tokens, i64 heads, i64 head_dim, i64 row_stride, const int* positions, float theta,
                       cudaStream_t stream) {
  const i64 chunks = head_dim / 2 / kElems;
  const auto blocks_for = [&](i64 heads_per_thread) {
    return static_cast<i64>(grid_for(tokens * ((heads + heads_per_thread - 1) / heads_per_thread) * chunks, kBlock));
  };
  // Half the heads per thread doubles the blocks (and the angle computations, which stay hidden behind the memory
  // traffic): taken when that fills the waves better by more than a few percent.
  const i64 resident = resident_blocks(rope_kernel<kElems>, kBlock, blocks_for(kRopeHeadsPerThread));
  const i64 fewer_heads = kRopeHeadsPerThread / 2;
  const double fill_default = wave_fill(blocks_for(kRopeHeadsPerThread), resident);
  const bool split = heads > fewer_heads && wave_fill(blocks_for(fewer_heads), resident) > fill_default + 0.03;
  const i64 per_thread = split ? fewer_heads : kRopeHeadsPerThread;
  const i64 groups = (heads + per_thread - 1) / per_thread;
  rope_kernel<kElems><<<static_cast<unsigned>(blocks_for(per_thread)), kBlock, 0, stream>>>(
      x, tokens, heads, head_dim, row_stride, positions, theta, groups);
}

// ---------------------------------------------------------------------------------------------------------------
// SwiGLU and residual add: kUnroll packs per thread, all loaded before any is written.

constexpr int kUnroll = 4;

template <int kElems>
__global__ void add_kernel(bf16* y, const bf16* x, i64 packs) {
  const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x * kUnroll;
  for (i64 base = blockIdx.x * static_cast<i64>(blockDim.x) * kUnroll + threadIdx.x; base < packs; base += stride) {
    Pack<kElems> a[kUnroll], b[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const i64 i = base + static_cast<i64>(u) * blockDim.x;
      if (i < packs) {
        a[u].load(y + i * kElems);
        b[u].load(x + i * kElems);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const i64 i = base + static_cast<i64>(u) * blockDim.x;
      if (i >= packs) continue;
      add_in_place(a[u], b[u]);
      a[u].store(y + i * kElems);
    }
  }
}

template <int kElems>
__global__ void silu_mul_kernel(const bf16* gu, bf16* out, i64 rows, i64 row_packs) {
  const i64 packs = rows * row_packs;
  const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x * kUnroll;
  for (i64 base = blockIdx.x * static_cast<i64>(blockDim.x) * kUnroll + threadIdx.x; base < packs; base += stride) {
    Pack<kElems> g[kUnroll], u[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const i64 i = base + static_cast<i64>(k) * blockDim.x;
      if (i < packs) {
        const i64 r = div_index(i, row_packs);
        const bf16* gate = gu + (r * row_packs + i) * kElems;  // row r of gate_up starts at 2·r·row_packs packs
        g[k].load(gate);
        u[k].load(gate + row_packs * kElems);
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const i64 i = base + static_cast<i64>(k) * blockDim.x;
      if (i >= packs) continue;
      float gv[kElems], uv[kElems];
      g[k].to_float(gv);
      u[k].to_float(uv);
#pragma unroll
      for (int e = 0; e < kElems; ++e) gv[e] = gv[e] / (1.0f + __expf(-gv[e])) * uv[e];
      g[k].from_float(gv);
      g[k].store(out + i * kElems);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// MoE unpermute and combine: one thread per (token, pack of columns), summing its token's rows in order.

constexpr int kRowsInFlight = 8;
constexpr int kSumBlock = 128;  // measured 3–4 % faster than 256 on H200 (combine, hidden 4096 and 7168)

// Row `slot` of token t: unpermute's rows are consecutive (t·slots + slot), combine's come from a map (negative: none).
struct UnpermuteRows {
  const float* weights;
  __device__ i64 row(i64 entry) const { return entry; }
  __device__ float weight(i64 entry) const { return weights[entry]; }
};
struct CombineRows {
  const int* row_map;
  const float* weights;  // null: 1
  __device__ i64 row(i64 entry) const { return row_map[entry]; }
  __device__ float weight(i64 entry) const { return weights != nullptr ? weights[entry] : 1.0f; }
};

template <int kElems, typename Rows>
__global__ void weighted_row_sum_kernel(const bf16* rows, Rows map, bf16* out, i64 tokens, i64 slots, i64 row_packs) {
  const i64 total = tokens * row_packs;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 t = div_index(i, row_packs);
    const i64 c = i - t * row_packs;
    float acc[kElems];
#pragma unroll
    for (int e = 0; e < kElems; ++e) acc[e] = 0.0f;
    for (i64 s0 = 0; s0 < slots; s0 += kRowsInFlight) {
      Pack<kElems> x[kRowsInFlight];
      i64 src[kRowsInFlight];
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k) {
        src[k] = s0 + k < slots ? map.row(t * slots + s0 + k) : -1;
        if (src[k] >= 0) x[k].load(rows + (src[k] * row_packs + c) * kElems);
      }
#pragma unroll
      for (int k = 0; k < kRowsInFlight; ++k) {
        if (src[k] < 0) continue;
        const float w = map.weight(t * slots + s0 + k);
        float v[kElems];
        x[k].to_float(v);
#pragma unroll
        for (int e = 0; e < kElems; ++e) acc[e] += w * v[e];
      }
    }
    Pack<kElems> y;
    y.from_float(acc);
    y.store(out + i * kElems);
  }
}

template <typename Rows>
void launch_weighted_row_sum(const void* rows, Rows map, void* out, i64 tokens, i64 slots, i64 n, cudaStream_t stream) {
  const auto* src = static_cast<const bf16*>(rows);
  auto* dst = static_cast<bf16*>(out);
  if (n % kVecElems == 0 && aligned16(rows) && aligned16(out)) {
    const i64 packs = n / kVecElems;
    weighted_row_sum_kernel<kVecElems>
        <<<grid_for(tokens * packs, kSumBlock), kSumBlock, 0, stream>>>(src, map, dst, tokens, slots, packs);
  } else {
    weighted_row_sum_kernel<1>
        <<<grid_for(tokens * n, kSumBlock), kSumBlock, 0, stream>>>(src, map, dst, tokens, slots, n);
  }
}

}  // namespace

void launch_rmsnorm(const void* in, void* out, const void* weight, i64 rows, i64 n, i64 inner, i64 outer_stride,
                    const int* row_map, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  const NormRows a{static_cast<const bf16*>(in), static_cast<bf16*>(out), n, inner, outer_stride, row_map};
  const bool vectors =
      n % kVecElems == 0 && outer_stride % kVecElems == 0 && aligned16(in) && aligned16(out) && aligned16(weight);
  launch_norm<false>(a, AddRows{nullptr}, static_cast<const bf16*>(weight), rows, vectors, eps, stream);
}

void launch_add_rmsnorm(void* residual, const void* update, void* out, const void* weight, i64 rows, i64 n, float eps,
                        cudaStream_t stream) {
  if (rows == 0) return;
  // Two outputs: the residual stream's new rows (the rounded sum) and the normed rows. With out == residual the
  // addressing takes launch_rmsnorm's in-place form (NormRows::dst) and the normed rows overwrite the sum the next
  // layer's add needs; rows that overlap at an offset would race between warps (one writing the normed row while
  // another still reads it as residual). `out` may be `update`: a thread reads its update elements before it writes
  // the same output elements.
  const i64 bytes = rows * n * static_cast<i64>(sizeof(bf16));
  PARATWIN_ASSERT(!byte_ranges_overlap(out, residual, bytes),
                  "launch_add_rmsnorm: out ({}) must not overlap residual ({}) over {} rows of {}: the kernel writes "
                  "both the new residual (the sum) and the normed rows, so they need rows of their own",
                  static_cast<const void*>(out), static_cast<const void*>(residual), rows, n);
  PARATWIN_ASSERT(out == update || !byte_ranges_overlap(out, update, bytes),
                  "launch_add_rmsnorm: out ({}) must be update ({}) or not overlap it over {} rows of {}",
                  static_cast<const void*>(out), update, rows, n);
  const NormRows a{static_cast<const bf16*>(residual), static_cast<bf16*>(out), n, 1, n, nullptr};
  const bool vectors =
      n % kVecElems == 0 && aligned16(residual) && aligned16(update) && aligned16(out) && aligned16(weight);
  launch_norm<true>(a, AddRows{static_cast<const bf16*>(update)}, static_cast<const bf16*>(weight), rows, vectors, eps,
                    stream);
}

void launch_rope(void* x, i64 tokens, i64 heads, i64 head_dim, i64 row_stride, const int* positions, float theta,
                 cudaStream_t stream) {
  if (tokens * heads * (head_dim / 2) == 0) return;
  auto* p = static_cast<bf16*>(x);
  if (head_dim % (2 * kVecElems) == 0 && row_stride % kVecElems == 0 && aligned16(x)) {
    launch_rope_packs<kVecElems>(p, tokens, heads, head_dim, row_stride, positions, theta, stream);
  } else {
    launch_rope_packs<1>(p, tokens, heads, head_dim, row_stride, positions, theta, stream);
  }
}

void launch_silu_mul(const void* gate_up, void* out, i64 rows, i64 n, cudaStream_t stream) {
  if (rows * n == 0) return;
  const auto* gu = static_cast<const bf16*>(gate_up);
  auto* o = static_cast<bf16*>(out);
  if (n % kVecElems == 0 && aligned16(gate_up) && aligned16(out)) {
    const i64 row_packs = n / kVecElems;
    silu_mul_kernel<kVecElems>
        <<<grid_for(rows * row_packs, kBlock * kUnroll), kBlock, 0, stream>>>(gu, o, rows, row_packs);
  } else {
    silu_mul_kernel<1><<<grid_for(rows * n, kBlock * kUnroll), kBlock, 0, stream>>>(gu, o, rows, n);
  }
}

void launch_add(void* y, const void* x, i64 count, cudaStream_t stream) {
  if (count == 0) return;
  auto* dst = static_cast<bf16*>(y);
  const auto* src = static_cast<const bf16*>(x);
  i64 done = 0;
  if (aligned16(y) && aligned16(x)) {  // the vector body, then the last count % 8 elements one by one
    const i64 packs = count / kVecElems;
    if (packs > 0) add_kernel<kVecElems><<<grid_for(packs, kBlock * kUnroll), kBlock, 0, stream>>>(dst, src, packs);
    done = packs * kVecElems;
  }
  if (done < count) {
    add_kernel<1>
        <<<grid_for(count - done, kBlock * kUnroll), kBlock, 0, stream>>>(dst + done, src + done, count - done);
  }
}

void launch_moe_unpermute(const void* rows, const float* weights, void* out, i64 tokens, i64 topk, i64 n,
                          cudaStream_t stream) {
  if (tokens * n == 0) return;
  launch_weighted_row_sum(rows, UnpermuteRows{weights}, out, tokens, topk, n, stream);
}

void launch_moe_combine(const void* rows, const int* row_map, const float* weights, void* out, i64 tokens, i64 slots,
                        i64 n, cudaStream_t stream) {
  if (tokens * n == 0) return;
  launch_weighted_row_sum(rows, CombineRows{row_map, weights}, out, tokens, slots, n, stream);
}

}  // namespace paratwin::cuda
