// DeepSeek-V3.2's DSA top-k: per row of the indexer's fp32 scores, the indices of the k largest, by radix selection
// on the float bits. Declared in kernels.hpp (launch_topk).
//
// One block per row. The first pass builds a shared-memory histogram of the top 11 bits of each order-preserving key;
// its scan finds the bin B holding the k-th largest key. The second pass (the row is in L2 by then) writes the indices
// of keys above B and gathers the keys of bin B (a few hundred on the indexer's scores) into a shared-memory candidate
// list; the 11- and 10-bit histograms that settle the remaining bits run over that list alone. Only when bin B holds
// more keys than the list (heavy ties) do those passes re-read the row. Causal rows are read only up to their query's
// position: the indexer writes −FLT_MAX after it, so half of a causal prompt's scores are never read. Masked values
// (−FLT_MAX, −inf) are never selected; among keys equal to the k-th largest, any may be taken.
//
// Four blocks of 512 threads per multiprocessor (registers capped at 32, two float4 loads in flight per thread) ran
// faster than two blocks with the row kept in shared memory or with 4 copies of the histogram (docs/performance.md,
// "The DSA top-k reads only the causal prefix").
#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 2048;         // the widest digit: 11 bits
constexpr int kTopShift = 21;       // the first digit is bits 31..21 of the key
constexpr int kCandidates = 4096;   // bin B's keys kept in shared memory (8 bytes each)
constexpr int kBatch = 2;           // float4 loads in flight per thread in the passes over the row
constexpr int kMinBlocksPerSm = 4;  // 4 × 41 KB of shared memory

// Order-preserving map of a float to an unsigned key.
__device__ inline unsigned float_key(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

__device__ inline i64 row_length(const TopkRowLengths& lengths, i64 row, i64 n) {
  if (lengths.q_tokens == 0) return n;
  const i64 visible = lengths.q_start + row % lengths.q_tokens * lengths.q_stride + 1;
  return visible < 0 ? 0 : (visible < n ? visible : n);
}

// Slot of this lane in a list that the lanes with `take` append to: one shared-memory atomic per warp. Every lane of
// the warp must call it (the passes keep their trip counts uniform across the block). −1 where !take.
__device__ inline int warp_append(bool take, int* counter) {
  const unsigned mask = __ballot_sync(0xffffffffu, take);
  if (mask == 0) return -1;
  const int lane = static_cast<int>(threadIdx.x) % 32, leader = __ffs(mask) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(counter, __popc(mask));
  base = __shfl_sync(0xffffffffu, base, leader);
  return take ? base + __popc(mask & ((1u << lane) - 1u)) : -1;
}

struct Shared {
  int hist[kBins];
  int warp_sums[kWarps];
  unsigned digit;
  int above, total, digit_count;  // of the digit found: keys in higher bins, all keys counted, keys in its bin
  int written_above, written_equal, candidates;
  unsigned candidate_key[kCandidates];
  int candidate_index[kCandidates];
};

// The row's values by float4 chunk (chunk c holds values 4c..4c+3); values at or past `length` read as −FLT_MAX
// (never a candidate).
struct RowReader {
  const float* row;
  i64 length;
  bool vector_loads;

  __device__ float4 chunk(i64 c) const {
    if (vector_loads && 4 * c + 3 < length) return __ldg(reinterpret_cast<const float4*>(row) + c);
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = 4 * c + j < length ? __ldg(row + 4 * c + j) : -FLT_MAX;
    return make_float4(v[0], v[1], v[2], v[3]);
  }
};

// Calls f(chunk, values) for every chunk of [first, last), kBatch loads issued before any is used. The trip count is
// the same for every thread (the passes' warp collectives need it): chunks past `last` read as −FLT_MAX.
template <typename F>
__device__ inline void for_each_chunk(const RowReader& reader, i64 first, i64 last, F&& f) {
  const float4 masked = make_float4(-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX);
  for (i64 start = first; start < last; start += kBatch * kThreads) {
    const i64 mine = start + static_cast<i64>(threadIdx.x);
    float4 v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const i64 c = mine + b * kThreads;
      v[b] = c < last ? reader.chunk(c) : masked;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) f(mine + b * kThreads, v[b]);
  }
}

// Finds the digit (of `bins` counted in sh.hist) whose bin holds the `remaining`-th largest key: sh.digit, the keys
// in higher bins (sh.above), in its bin (sh.digit_count) and in all bins (sh.total; when ≤ remaining, no digit is
// set). Each thread owns bins / kThreads consecutive bins counted from the top; an exclusive block scan of their sums
// gives the count above each thread's bins, and the thread whose bins cross `remaining` holds the digit.
__device__ void find_digit(Shared& sh, int bins, int remaining) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int per_thread = bins / kThreads;
  const int top_bin = bins - 1 - static_cast<int>(threadIdx.x) * per_thread;
  int local = 0;
  for (int i = 0; i < per_thread; ++i) local += sh.hist[top_bin - i];
  int inclusive = local;
  for (int offset = 1; offset < 32; offset *= 2) {
    const int v = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += v;
  }
  if (lane == 31) sh.warp_sums[warp] = inclusive;
  __syncthreads();
  int above = inclusive - local;
  for (int w = 0; w < warp; ++w) above += sh.warp_sums[w];
  if (threadIdx.x == kThreads - 1) sh.total = above + local;
  for (int i = 0; i < per_thread; ++i) {
    const int count = sh.hist[top_bin - i];
    if (above < remaining && above + count >= remaining) {
      sh.digit = static_cast<unsigned>(top_bin - i);
      sh.above = above;
      sh.digit_count = count;
    }
    above += count;
  }
  __syncthreads();
}

// The selection below the first digit. `for_each_key(f)` calls f(index, key, valid) for every key of bin B (and
// possibly others, which the prefix test drops) with the same trip count on every thread. On entry `remaining` keys of
// bin B are still to be taken and sh.written_above counts the indices already written. The 11- and 10-bit passes fix
// the rest of the k-th largest key (stopping once the keys matching the prefix are exactly the ones needed), then one
// pass writes the keys above it and as many equal to it as are still needed.
template <typename ForEachKey>
__device__ void select_in_bin(Shared& sh, ForEachKey&& for_each_key, unsigned prefix, int remaining, int* out, i64 k) {
  const unsigned bin_mask = ~0u << kTopShift, bin_prefix = prefix;
  unsigned prefix_mask = bin_mask;
  bool take_all = sh.digit_count == remaining;
  for (int pass = 0; pass < 2 && !take_all; ++pass) {
    const int shift = pass == 0 ? 10 : 0, bins = pass == 0 ? 2048 : 1024;  // bits 20..10, then 9..0
    const unsigned digit_mask = static_cast<unsigned>(bins - 1);
    for (int b = static_cast<int>(threadIdx.x); b < bins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for_each_key([&](i64, unsigned key, bool valid) {
      if (valid && (key & prefix_mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & digit_mask], 1);
    });
    __syncthreads();
    find_digit(sh, bins, remaining);  // ≥ remaining keys match the prefix, so the digit is set
    remaining -= sh.above;
    prefix |= sh.digit << shift;
    prefix_mask |= digit_mask << shift;
    take_all = sh.digit_count == remaining;
    __syncthreads();  // sh.digit etc. are rewritten by the next pass
  }
  const int taken_above = static_cast<int>(k) - remaining;  // keys above the final prefix: all taken
  for_each_key([&](i64 i, unsigned key, bool valid) {
    valid = valid && (key & bin_mask) == bin_prefix;  // keys of higher bins are written already
    const unsigned masked = key & prefix_mask;
    const int above = warp_append(valid && masked > prefix, &sh.written_above);
    if (above >= 0) out[above] = static_cast<int>(i);
    const int equal = warp_append(valid && masked == prefix, &sh.written_equal);
    if (equal >= 0 && (take_all || equal < remaining)) out[taken_above + equal] = static_cast<int>(i);
  });
}

__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    topk_kernel(const float* in, int* indices, i64 n, i64 k, TopkRowLengths lengths) {
  __shared__ Shared sh;
  const i64 row_index = blockIdx.x;
  int* out = indices + row_index * k;
  const i64 length = row_length(lengths, row_index, n);
  const i64 chunks = (length + 3) / 4;
  const RowReader reader{in + row_index * n, length, n % 4 == 0 && (reinterpret_cast<std::uintptr_t>(in) & 15u) == 0};
  const unsigned floor_key = float_key(-FLT_MAX);
  if (threadIdx.x == 0) {
    sh.written_above = 0;
    sh.written_equal = 0;
    sh.candidates = 0;
  }

  // Rows of at most k values take every candidate: no histogram.
  bool take_all = length <= k;
  if (!take_all) {
    for (int b = static_cast<int>(threadIdx.x); b < kBins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for_each_chunk(reader, 0, chunks, [&](i64, float4 v) {
      const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const unsigned key = float_key(x[j]);
        if (key > floor_key) atomicAdd(&sh.hist[key >> kTopShift], 1);
      }
    });
    __syncthreads();
    find_digit(sh, kBins, static_cast<int>(k));
    take_all = sh.total <= k;  // fewer candidates than k
  }
  __syncthreads();

  if (take_all) {
    for_each_chunk(reader, 0, chunks, [&](i64 c, float4 v) {
      const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int slot = warp_append(float_key(x[j]) > floor_key, &sh.written_above);
        if (slot >= 0) out[slot] = static_cast<int>(4 * c + j);
      }
    });
    __syncthreads();
    // −1 after the last selected index when the row has fewer than k candidates.
    for (i64 s = sh.written_above + static_cast<int>(threadIdx.x); s < k; s += kThreads) out[s] = -1;
    return;
  }

  // Keys above bin B: written now. Keys of bin B: into the candidate list (counted past its end too).
  const unsigned bin = sh.digit;
  const int remaining = static_cast<int>(k) - sh.above;
  for_each_chunk(reader, 0, chunks, [&](i64 c, float4 v) {
    const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const unsigned key = float_key(x[j]);
      const bool valid = key > floor_key;
      const int above = warp_append(valid && (key >> kTopShift) > bin, &sh.written_above);
      if (above >= 0) out[above] = static_cast<int>(4 * c + j);
      const int slot = warp_append(valid && (key >> kTopShift) == bin, &sh.candidates);
      if (slot >= 0 && slot < kCandidates) {
        sh.candidate_key[slot] = key;
        sh.candidate_index[slot] = static_cast<int>(4 * c + j);
      }
    }
  });
  __syncthreads();

  const unsigned prefix = bin << kTopShift;
  if (sh.candidates <= kCandidates) {
    const int count = sh.candidates;
    select_in_bin(
        sh,
        [&](auto&& f) {
          for (int base = 0; base < count; base += kThreads) {
            const int s = base + static_cast<int>(threadIdx.x);
            const bool valid = s < count;
            f(valid ? sh.candidate_index[s] : 0, valid ? sh.candidate_key[s] : 0u, valid);
          }
        },
        prefix, remaining, out, k);
  } else {  // heavy ties: bin B is re-read from the row
    select_in_bin(
        sh,
        [&](auto&& f) {
          for_each_chunk(reader, 0, chunks, [&](i64 c, float4 v) {
            const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const unsigned key = float_key(x[j]);
              f(4 * c + j, key, key > floor_key);
            }
          });
        },
        prefix, remaining, out, k);
  }
}

}  // namespace

void launch_topk(const float* in, int* indices, i64 rows, i64 n, i64 k, const TopkRowLengths& lengths,
                 cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  // 4 blocks × 41 KB per multiprocessor need the largest shared-memory carveout; left to the driver it may pick less.
  (void)cudaFuncSetAttribute(topk_kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
  topk_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(in, indices, n, k, lengths);
}

}  // namespace paratwin::cuda
