#pragma once
// What the DSA indexer's two Hopper kernels share (indexer_wgmma.cu: bf16 q and k; indexer_fp8_wgmma.cu: e4m3 q and k
// with per-key scales): the tile geometry, the keys a block must compute under causality, and the epilogue that turns
// a consumer warpgroup's wgmma m64n256 accumulators (64 keys × 4 queries' 64 heads) into scores in registers: relu ·
// head weight summed over the thread's 16 heads of each query, then over the quad's 4 lanes (the other 48 heads); the
// fp8 kernel's form of it for one m64n128 half (2 queries' 64 heads) is pair_head_weighted_sum; and the block's frame
// (run_indexer_block).
// The accumulator layout is wgmma's for fp32 D of any input type (hopper_ops.cuh): thread t holds
// acc[4c + 2h + e] = D[16·(t/32) + (t%32)/4 + 8h][8c + 2·(t%4) + e].
#include <cfloat>
#include <cstdint>

#include "backend/cuda/hopper_ops.cuh"

namespace paratwin::cuda::indexer_tile {

using i64 = std::int64_t;

constexpr int kHeads = 64;
constexpr int kKeyTile = 64;                               // keys per stage = the wgmma M extent
constexpr int kGroupQueries = 4;                           // queries per consumer: N = 4 · 64 heads = 256
constexpr int kConsumers = 2;                              // consumer warpgroups
constexpr int kBlockQueries = kGroupQueries * kConsumers;  // 8
constexpr int kThreads = 128 * (1 + kConsumers);           // producer warpgroup + consumers
// Named barriers of the consumers' turns on the tensor cores (0 is __syncthreads).
constexpr unsigned kTurnFirst = 1, kTurnSecond = 2;

// Keys the block must compute: up to the largest visible position of its queries (all keys when not causal).
__device__ inline i64 block_visible_keys(i64 q0, i64 block_queries, i64 keys, i64 q_start, i64 q_stride, bool causal) {
  if (!causal) return keys;
  const i64 first = q_start + q0 * q_stride, last = q_start + (q0 + block_queries - 1) * q_stride;
  const i64 max_pos = first > last ? first : last;
  const i64 visible = max_pos + 1 < keys ? max_pos + 1 : keys;
  return visible > 0 ? visible : 0;
}

// The head weights of this thread's accumulator columns, as floats: column block c (8 columns) is query
// group_q0 + c / 8, heads 8·(c % 8) + 2·(lane % 4) + e; 0 for queries past the last. `weight(i)` reads w[i].
template <typename WeightAt>
__device__ inline void load_head_weights(float (&head_w)[32][2], i64 group_q0, i64 queries, int lane,
                                         WeightAt&& weight) {
#pragma unroll
  for (int c = 0; c < 32; ++c) {
    const i64 qi = group_q0 + c / 8;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int h = 8 * (c % 8) + 2 * (lane % 4) + e;
      head_w[c][e] = qi < queries ? weight(qi * kHeads + h) : 0.0f;
    }
  }
}

// The query whose scores this lane holds after head_weighted_sums: 2·(lane & 1) + (lane >> 1 & 1) of the group.
__device__ inline i64 output_query(i64 group_q0, int lane) {
  return group_q0 + 2 * (lane & 1) + ((lane >> 1) & 1);
}

// Σ w · relu(acc) over this thread's 16 heads of query qq at its key row r (lane/4, + 8 for r = 1): accumulator
// columns 8c + 2·(lane % 4) + e for c in [8·qq, 8·qq + 8), weighted by head_w[w0 + c][e]. The head sums below add
// these over the quad's lanes.
template <int kAcc>
__device__ inline float thread_head_sum(const float (&acc)[kAcc], const float (&head_w)[32][2], int w0, int qq, int r) {
  float sum = 0.0f;
#pragma unroll
  for (int cc = 0; cc < 8; ++cc) {
    const int c = qq * 8 + cc;
    sum = fmaf(head_w[w0 + c][0], fmaxf(acc[4 * c + 2 * r], 0.0f), sum);
    sum = fmaf(head_w[w0 + c][1], fmaxf(acc[4 * c + 2 * r + 1], 0.0f), sum);
  }
  return sum;
}

// Σ_h w · relu(acc) over a query's 64 heads for this lane's output query (output_query) at its two key rows
// (16·warp + lane/4 and + 8 of the tile): score[r]. The sum over the thread's 16 heads of each query is local; the
// sum over the quad's 4 lanes is a reduce-scatter: each round keeps half the values and adds the partner's copy of
// them, so 6 shuffles leave each lane 2 finished values. All 32 lanes of the warp take part.
__device__ inline void head_weighted_sums(const float (&acc)[128], const float (&head_w)[32][2], int lane,
                                          float (&score)[2]) {
  float v[8];  // v[2·query + row]
#pragma unroll
  for (int qq = 0; qq < kGroupQueries; ++qq) {
#pragma unroll
    for (int r = 0; r < 2; ++r) v[2 * qq + r] = thread_head_sum(acc, head_w, 0, qq, r);
  }
  const bool odd = (lane & 1) != 0, high = (lane & 2) != 0;
  float u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float keep = odd ? v[i + 4] : v[i], send = odd ? v[i] : v[i + 4];
    u[i] = keep + __shfl_xor_sync(0xffffffffu, send, 1);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float keep = high ? u[r + 2] : u[r], send = high ? u[r] : u[r + 2];
    score[r] = keep + __shfl_xor_sync(0xffffffffu, send, 2);
  }
}

// The pair of queries (2·pair, 2·pair + 1 of a consumer's 4) whose scores this lane holds after pair_head_weighted_sum:
// query 2·pair + (lane & 1), at key row 16·warp + lane/4 + 8·pair_key_half(lane).
__device__ inline i64 pair_output_query(i64 group_q0, int pair, int lane) {
  return group_q0 + 2 * pair + (lane & 1);
}
__device__ inline int pair_key_half(int lane) {
  return (lane >> 1) & 1;
}

// head_weighted_sums for one half of the N extent, wgmma m64n128 accumulators of 2 queries × 64 heads (query pair
// `pair` of the consumer's 4, whose head weights are head_w[16·pair ..]): Σ_h w · relu(acc) for this lane's query and
// key row (pair_output_query, pair_key_half). The same 16-heads-in-thread sums, then a 3-shuffle reduce-scatter over
// the quad leaves each lane one finished value.
__device__ inline float pair_head_weighted_sum(const float (&acc)[64], const float (&head_w)[32][2], int pair,
                                               int lane) {
  float v[4];  // v[2·query + row]
#pragma unroll
  for (int qq = 0; qq < 2; ++qq) {
#pragma unroll
    for (int r = 0; r < 2; ++r) v[2 * qq + r] = thread_head_sum(acc, head_w, 16 * pair, qq, r);
  }
  const bool odd = (lane & 1) != 0, high = (lane & 2) != 0;
  float u[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float keep = odd ? v[2 + r] : v[r], send = odd ? v[r] : v[2 + r];
    u[r] = keep + __shfl_xor_sync(0xffffffffu, send, 1);
  }
  const float keep = high ? u[1] : u[0], send = high ? u[0] : u[1];
  return keep + __shfl_xor_sync(0xffffffffu, send, 2);
}

// Writes −FLT_MAX to the keys from `masked0` on of the block's rows (past every visible position: never computed),
// thread `filler` of `fillers`.
__device__ inline void mask_keys_past(float* out, i64 q0, i64 block_queries, i64 keys, i64 masked0, int filler,
                                      int fillers) {
  for (i64 r = 0; r < block_queries; ++r) {
    float* row = out + (q0 + r) * keys;
    for (i64 j = masked0 + filler; j < keys; j += fillers) row[j] = -FLT_MAX;
  }
}

// A block's life after its shared memory is laid out, the same in both kernels: its queries q0 .. +7 (the last blocks
// hold the latest queries, which see the most keys under causality: they start first) and the key tiles they see;
// thread 0 initialises the barriers at `barriers`: the ring's kStages `full` (one arrival: the producer's, plus the
// copy's bytes) and `empty` (`empty_arrivals` each), then one `q_full` per consumer. Warpgroup 0 gives up registers:
// its thread 0 runs `produce(q0, tiles)` (when there are tiles), its other three warps write −FLT_MAX to the keys past
// every visible position of the block (never computed) while the consumers compute. Consumer warpgroup c claims
// registers and runs `consume(c, q0, tiles)`.
template <unsigned kStages, unsigned kProducerRegs, unsigned kConsumerRegs, typename Produce, typename Consume>
__device__ __forceinline__ void run_indexer_block(unsigned barriers, unsigned empty_arrivals, float* out, i64 queries,
                                                  i64 keys, i64 q_start, i64 q_stride, bool causal, Produce&& produce,
                                                  Consume&& consume) {
  namespace hw = hopper;
  const unsigned full = barriers, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  const i64 q0 = static_cast<i64>(gridDim.x - 1 - blockIdx.x) * kBlockQueries;
  const i64 block_queries = queries - q0 < kBlockQueries ? queries - q0 : kBlockQueries;
  const i64 visible_keys = block_visible_keys(q0, block_queries, keys, q_start, q_stride, causal);
  const int tiles = static_cast<int>((visible_keys + kKeyTile - 1) / kKeyTile);

  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < kStages; ++s) {
      hw::mbarrier_init(full + 8 * s, 1);
      hw::mbarrier_init(empty + 8 * s, empty_arrivals);
    }
    for (unsigned c = 0; c < kConsumers; ++c) hw::mbarrier_init(q_full + 8 * c, 1);
    hw::fence_mbarrier_init();
  }
  __syncthreads();

  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
  if (warpgroup == 0) {
    hw::warpgroup_release_registers<kProducerRegs>();
    const int warp = static_cast<int>(threadIdx.x) / 32;
    if (warp == 0) {
      if (threadIdx.x == 0 && tiles > 0) produce(q0, tiles);
    } else {
      mask_keys_past(out, q0, block_queries, keys, static_cast<i64>(tiles) * kKeyTile,
                     static_cast<int>(threadIdx.x) - 32, 96);
    }
  } else {
    hw::warpgroup_claim_registers<kConsumerRegs>();
    consume(warpgroup - 1, q0, tiles);
  }
}

}  // namespace paratwin::cuda::indexer_tile
