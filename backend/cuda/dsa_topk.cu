// DeepSeek-V3.2's DSA top-k: per row of the indexer's fp32 scores, the indices of the k largest, by radix selection
// on the float bits. Declared in kernels.hpp (launch_topk). Causal rows are read only up to their query's position:
// the indexer writes −FLT_MAX after it, so half of a causal prompt's scores are never read.
#include <cfloat>
#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;

__device__ inline i64 row_length(const TopkRowLengths& lengths, i64 row, i64 n) {
  if (lengths.q_tokens == 0) return n;
  const i64 visible = lengths.q_start + row % lengths.q_tokens * lengths.q_stride + 1;
  return visible < 0 ? 0 : (visible < n ? visible : n);
}

// ---------------------------------------------------------------------------------------------------------------
// Top-k, one block per row, radix selection on the float bits: histograms of 11, 11 and 10 bits of the
// order-preserving key find the k-th largest key T (each pass only among keys matching the digits found so far; it
// stops early once the remaining candidates are exactly the ones needed), then one pass writes the keys above T and
// as many keys equal to T as are still needed. Masked values (−FLT_MAX, −inf) are never selected.

constexpr int kTopkThreads = 512;
constexpr int kTopkBins = 2048;

// Order-preserving map of a float to an unsigned key.
__device__ inline unsigned float_key(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

// Calls f(index, key) for every element of the row: float4 loads when the row is 16-byte aligned.
template <typename F>
__device__ inline void for_each_key(const float* row, i64 n, bool vector_loads, F&& f) {
  if (vector_loads) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (i64 i = threadIdx.x; i < n / 4; i += kTopkThreads) {
      const float4 v = row4[i];
      f(4 * i, float_key(v.x));
      f(4 * i + 1, float_key(v.y));
      f(4 * i + 2, float_key(v.z));
      f(4 * i + 3, float_key(v.w));
    }
    for (i64 i = n / 4 * 4 + threadIdx.x; i < n; i += kTopkThreads) f(i, float_key(row[i]));
  } else {
    for (i64 i = threadIdx.x; i < n; i += kTopkThreads) f(i, float_key(row[i]));
  }
}

__global__ void __launch_bounds__(kTopkThreads)
    topk_radix_kernel(const float* in, int* indices, i64 n, i64 k, TopkRowLengths lengths) {
  __shared__ int hist[kTopkBins];
  __shared__ int warp_sums[kTopkThreads / 32];
  __shared__ unsigned s_digit;
  __shared__ int s_above, s_total, s_digit_count;
  __shared__ int written_above, written_equal;

  const float* row = in + static_cast<i64>(blockIdx.x) * n;
  int* out = indices + static_cast<i64>(blockIdx.x) * k;
  const i64 length = row_length(lengths, blockIdx.x, n);  // values past it are not read
  const bool vector_loads = n % 4 == 0 && (reinterpret_cast<std::uintptr_t>(in) & 15u) == 0;
  const unsigned floor_key = float_key(-FLT_MAX);
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;

  unsigned prefix = 0, prefix_mask = 0;
  int remaining = static_cast<int>(k);  // how many keys matching the prefix are still to be taken
  bool take_all = false;                // every candidate matching the prefix is taken
  constexpr int kShifts[3] = {21, 10, 0};
  constexpr int kBits[3] = {11, 11, 10};
  for (int pass = 0; pass < 3 && !take_all; ++pass) {
    const int shift = kShifts[pass], bins = 1 << kBits[pass];
    const unsigned digit_mask = static_cast<unsigned>(bins - 1);
    for (int b = static_cast<int>(threadIdx.x); b < bins; b += kTopkThreads) hist[b] = 0;
    __syncthreads();
    for_each_key(row, length, vector_loads, [&](i64, unsigned key) {
      if (key > floor_key && (key & prefix_mask) == prefix) atomicAdd(&hist[(key >> shift) & digit_mask], 1);
    });
    __syncthreads();

    // Each thread owns `per_thread` consecutive bins counted from the top; an exclusive block scan of their sums gives
    // the count above each thread's bins, and the thread whose bins cross `remaining` holds the digit.
    const int per_thread = bins / kTopkThreads;
    const int top_bin = bins - 1 - static_cast<int>(threadIdx.x) * per_thread;
    int local = 0;
    for (int i = 0; i < per_thread; ++i) local += hist[top_bin - i];
    int inclusive = local;
    for (int offset = 1; offset < 32; offset *= 2) {
      const int v = __shfl_up_sync(0xffffffffu, inclusive, offset);
      if (lane >= offset) inclusive += v;
    }
    if (lane == 31) warp_sums[warp] = inclusive;
    __syncthreads();
    int above = inclusive - local;
    for (int w = 0; w < warp; ++w) above += warp_sums[w];
    if (threadIdx.x == kTopkThreads - 1) s_total = above + local;
    for (int i = 0; i < per_thread; ++i) {
      const int count = hist[top_bin - i];
      if (above < remaining && above + count >= remaining) {
        s_digit = static_cast<unsigned>(top_bin - i);
        s_above = above;
        s_digit_count = count;
      }
      above += count;
    }
    __syncthreads();
    if (s_total <= remaining) {  // fewer candidates than needed (only in pass 0: later passes hold ≥ remaining)
      take_all = true;
      break;
    }
    remaining -= s_above;
    prefix |= s_digit << shift;
    prefix_mask |= digit_mask << shift;
    take_all = s_digit_count == remaining;
    __syncthreads();  // s_* are rewritten by the next pass
  }

  if (threadIdx.x == 0) {
    written_above = 0;
    written_equal = 0;
  }
  __syncthreads();
  const int taken_above = static_cast<int>(k) - remaining;  // keys whose prefix is above: all taken
  for_each_key(row, length, vector_loads, [&](i64 i, unsigned key) {
    if (key <= floor_key) return;
    const unsigned masked = key & prefix_mask;
    if (masked > prefix) {
      out[atomicAdd(&written_above, 1)] = static_cast<int>(i);
    } else if (masked == prefix) {
      const int slot = atomicAdd(&written_equal, 1);
      if (take_all || slot < remaining) out[taken_above + slot] = static_cast<int>(i);
    }
  });
  __syncthreads();
  if (take_all) {  // −1 after the last selected index when the row has fewer than k candidates
    const int filled = taken_above + written_equal;
    for (i64 s = filled + static_cast<int>(threadIdx.x); s < k; s += kTopkThreads) out[s] = -1;
  }
}

}  // namespace

void launch_topk(const float* in, int* indices, i64 rows, i64 n, i64 k, const TopkRowLengths& lengths,
                 cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  topk_radix_kernel<<<static_cast<unsigned>(rows), kTopkThreads, 0, stream>>>(in, indices, n, k, lengths);
}

}  // namespace paratwin::cuda
