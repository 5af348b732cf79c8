#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cluster_pair_queue.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_arch.hpp"
#include "backend/cuda/fp8_grouped_gemm_kernel.hpp"
#include "backend/cuda/grouped_pair_cluster.cuh"
#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda/tensor_map.hpp"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda {

namespace {

namespace hw = hopper;
using cuda_plan::kGroupedHalfTileRows;
using cuda_plan::kGroupedTileCols;
using cuda_plan::kGroupedTileRows;
using grouped_pair::BlockTile;
using grouped_pair::kWarpgroupThreads;
using grouped_pair::kWarpStagingBytes;
using grouped_pair::PairQueue;
using grouped_pair::PairQueueCursor;

constexpr int kKBlock = 128;   // k per ring stage: one scale block, one 128-byte swizzle row of e4m3
constexpr int kStages = 3;     // 3 × 48 KB in flight per block (4 leave no room for the output staging)
constexpr int kConsumers = 2;  // warpgroups, 64 rows each
constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
constexpr int kScaleBlock = 128;                                // n-rows of one weight-scale block
constexpr int kNHalf = 128;                                     // columns of one wgmma n128 (one scale block)
constexpr unsigned kBoxBytes = kGroupedHalfTileRows * kKBlock;  // 64 rows × 128 k: one copy box, 8 KB
constexpr unsigned kABytes = 2 * kBoxBytes;                     // X tile: 128 rows × 128 k, K-major
constexpr unsigned kBBoxes = kGroupedTileCols / 64;             // W tile: 4 boxes of 64 n-rows × 128 k, K-major
constexpr unsigned kBBytes = kBBoxes * kBoxBytes;               // 32 KB
constexpr unsigned kNHalfBytes = kNHalf * kKBlock;              // one n128 half of the W tile, 16 KB
constexpr unsigned kStageBytes = kABytes + kBBytes;             // 48 KB
// Output staging as in the bf16 kernel (grouped_pair_cluster.cuh): 4 warps' rows per consumer.
constexpr unsigned kStagingOffset = kStages * kStageBytes;
// Each ring stage's scales, copied in by the producer with its operands so that the consumers read them from shared
// memory while their wgmma run (an L2 round trip takes about as long as a k-block half's 4 wgmma): the tile's 128
// activation scales of the k-block (one per X row), then per weight-scale block (n-block) of the tile the aligned 4
// k-blocks' weight scales around it (a bulk copy moves multiples of 16 bytes).
constexpr unsigned kXScaleBytes = kGroupedTileRows * 4;
constexpr unsigned kWScaleBytes = 16;  // 4 k-blocks of one n-block
constexpr unsigned kScaleStageBytes = kXScaleBytes + 2 * kWScaleBytes;
constexpr unsigned kScaleOffset = kStagingOffset + kConsumers * 4 * kWarpStagingBytes;
constexpr unsigned kBarrierOffset = kScaleOffset + kStages * kScaleStageBytes;
constexpr unsigned kPairQueueOffset = kBarrierOffset + 2 * kStages * 8;
constexpr unsigned kSmemBytes = kPairQueueOffset + grouped_pair::kPairQueueBytes + 1024;  // + room to align to 1024
// The poppers of each pair from rank 0's queue (cluster_pair_queue.cuh): every consumer warp of both blocks (each
// thread reads its tile from the pair) and rank 1's producer.
constexpr unsigned kPairPoppers = 2 * kConsumers * (kWarpgroupThreads / 32) + 1;
static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on sm_90");
// The consumers hold 192 accumulator registers per thread (a 256-column sum and a 128-column partial), which the
// compiler fits in 232 (224: 108 bytes of spills). setmaxnreg moves registers within what the block was launched
// with, 168 per thread (65,536 / 384 rounded down to 8): 128·40 + 256·232 = 384·168. (The producer spills a few
// registers of its scale-copy addresses at 40: ptxas -v reports 80 bytes of spill stores for the kernel, 40 at 48
// producer registers; 48 would need more than the block has and the consumers' setmaxnreg would wait forever.)
constexpr unsigned kProducerRegisters = 40;
constexpr unsigned kConsumerRegisters = 232;
static_assert(hw::warpgroup_registers_fit(kProducerRegisters, kConsumerRegisters, kConsumers),
              "the block's registers at launch");
static_assert(kFp8TensorMapBoxCols == kKBlock, "one k-block is one 128-byte box row");
static_assert(kGroupedTileRows == kConsumers * 64 && kGroupedTileCols == 2 * kNHalf, "wgmma m64n128, two per row");
static_assert(kFp8GroupedTileCols == kGroupedTileCols, "the bf16 kernel's tile walk");

// The tile of this block (rank 0 or 1 of its cluster) in a pair, as the bf16 kernel's.
__device__ inline BlockTile block_tile(const Fp8GroupedKernelArgs& a, int pair, unsigned rank) {
  return grouped_pair::block_tile(a.table, a.groups, a.n, pair, rank);
}

// A non-empty group's place in the operands (Fp8GroupedKernelArgs::table).
struct GroupPlace {
  int rows = 0, first_row = 0, scale_row = 0, expert = 0;
};
__device__ inline GroupPlace group_place(const Fp8GroupedKernelArgs& a, int group) {
  const int* info = a.table + 2 * a.groups + 3 * group;
  return {a.table[2 * group], info[0], info[1], info[2]};
}

// The producer, one thread per block, as the bf16 kernel's but over the pairs of the cluster's queue (rank 0's claims
// each pair and pushes it once the previous pair's first k-block is under way, so that the claim's round trip to L2
// hides behind that pair; rank 1's pops it): per pair and k-block, waits until both blocks' consumers released the
// slot, then fills its part of it in both blocks: a pair sharing W loads its own X tile (two boxes of 64 rows) and W
// boxes 2·rank, 2·rank + 1 (n-rows 128·rank .. +127) into both blocks; a pair sharing X loads X rows 64·rank .. +63
// into both blocks and its own 4 W boxes. Either way each block's `full` barrier counts the stage's
// 48 KB, plus the scales this block loads for itself: its tile's activation scales of the k-block (the rows of the
// group's padded scale column from the tile's first on, at most 128; none for a zero partner past the group's end)
// and 16 bytes of weight scales per n-block.
__device__ void produce(const Fp8GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank,
                        PairQueue queue) {
  constexpr std::uint16_t kBothBlocks = 0b11;
  const int k_blocks = a.k / kKBlock;
  const int w_scale_ld = (k_blocks + 3) / 4 * 4;  // fp8_gemm.hpp: k-blocks padded to a multiple of 4
  const std::int64_t w_scales_per_expert = std::int64_t{a.n / kScaleBlock} * w_scale_ld;
  int slot = 0;
  unsigned phase = 0;
  const bool claims = rank == 0;
  PairQueueCursor queue_at;
  int pair = static_cast<int>(blockIdx.x / 2);  // the cluster's first pair
  if (claims) {
    queue.push(queue_at, pair);
  } else {
    pair = queue.pop(queue_at);
  }
  while (pair < a.pairs) {
    const int next_pair = claims ? grouped_pair::claim_next_pair(a.pair_counter) : 0;
    const BlockTile tile = block_tile(a, pair, rank);
    const GroupPlace place = group_place(a, tile.group);
    const int x_row0 = place.first_row + tile.row0;
    const int w_row0 = place.expert * a.n + tile.col0;
    const int padded_rows = (place.rows + 3) / 4 * 4;
    const unsigned x_scale_bytes =
        4u * static_cast<unsigned>(std::clamp(padded_rows - tile.row0, 0, static_cast<int>(kGroupedTileRows)));
    const float* x_scale = a.x_scale + std::int64_t{place.scale_row} * k_blocks + tile.row0;
    const float* w_scale = a.w_scale + place.expert * w_scales_per_expert + (tile.col0 / kScaleBlock) * w_scale_ld;
    for (int kb = 0; kb < k_blocks; ++kb) {
      const unsigned full_bar = full + 8 * static_cast<unsigned>(slot);
      hw::mbarrier_wait(empty + 8 * static_cast<unsigned>(slot), phase ^ 1);  // a fresh barrier reads as released
      const unsigned sa = ring + static_cast<unsigned>(slot) * kStageBytes, sb = sa + kABytes;
      const unsigned scales = ring + kScaleOffset + static_cast<unsigned>(slot) * kScaleStageBytes;
      const int k0 = kb * kKBlock;
      hw::mbarrier_arrive_expect_bytes(full_bar, kStageBytes + x_scale_bytes + 2 * kWScaleBytes);
      if (x_scale_bytes > 0) {
        hw::bulk_load(scales, x_scale + std::int64_t{kb} * padded_rows, x_scale_bytes, full_bar);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        hw::bulk_load(scales + kXScaleBytes + static_cast<unsigned>(h) * kWScaleBytes,
                      w_scale + h * w_scale_ld + (kb & ~3), kWScaleBytes, full_bar);
      }
      if (tile.shared_weights) {
        hw::tma_load_2d(sa, &a.x_map, full_bar, k0, x_row0);
        hw::tma_load_2d(sa + kBoxBytes, &a.x_map, full_bar, k0, x_row0 + kGroupedHalfTileRows);
#pragma unroll
        for (unsigned b = 2 * rank; b < 2 * rank + 2; ++b) {
          hw::tma_load_2d_multicast(sb + b * kBoxBytes, &a.w_map, full_bar, k0, w_row0 + static_cast<int>(b) * 64,
                                    kBothBlocks);
        }
      } else {
        hw::tma_load_2d_multicast(sa + rank * kBoxBytes, &a.x_map, full_bar, k0,
                                  x_row0 + static_cast<int>(rank) * kGroupedHalfTileRows, kBothBlocks);
#pragma unroll
        for (unsigned b = 0; b < kBBoxes; ++b) {
          hw::tma_load_2d(sb + b * kBoxBytes, &a.w_map, full_bar, k0, w_row0 + static_cast<int>(b) * 64);
        }
      }
      if (kb == 0 && claims) queue.push(queue_at, next_pair);
      if (++slot == kStages) {
        slot = 0;
        phase ^= 1;
      }
    }
    pair = claims ? next_pair : queue.pop(queue_at);
  }
}

// Where one consumer warpgroup's share of a tile lies: its 64 X rows `a_offset` bytes into the stage's X tile (rows
// `row0` .. +63 of the group, `rows` of them valid, ≤ 0 for none), its kHalves · 128 columns `b_offset` bytes into the
// stage's W tile, its rows' activation scales from row `scale_row0` of the stage's and its first half's weight scales
// the stage's block `w_scale_half`, its output at `y` (rows a.n apart).
struct ConsumerShare {
  unsigned a_offset = 0, b_offset = 0;
  int row0 = 0, rows = 0;
  unsigned scale_row0 = 0, w_scale_half = 0;
  __nv_bfloat16* y = nullptr;
};

// One consumer warpgroup's share of one tile: 64 rows × kHalves · 128 columns. Per k-block: waits for the slot; per
// n128 half, issues 4 wgmma k32 steps into `partial`, reads (first half) this thread's two rows' activation scales and
// the half's weight scale while they run (from the stage's scales in shared memory), waits for them, and adds
// partial · x_scale · w_scale into `sum`; releases the slot after the last half's wgmma (its scales read by then).
// Two accumulator sets (sum, partial) of 64 registers per half: `partial` is reused by the second half. A share of no
// valid rows only follows the ring. Epilogue as the bf16 kernel's: bf16 into this warp's staging rows (at `staging`),
// stored row by row by the copy engine while the warp goes on.
template <int kHalves>
__device__ void consume_tile(const Fp8GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty,
                             hw::RingCursor<kStages>& ring_at, const ConsumerShare& share, unsigned staging) {
  const int t = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int warp = t / 32, lane = t % 32;
  const int k_blocks = a.k / kKBlock;
  const bool active = share.rows > 0;
  // Thread t holds rows lane / 4 and + 8 of the warp's 16, columns 8j + 2·(lane % 4) and + 1 (hopper_ops.cuh). Rows
  // past the group's scales read stale scales: their products are never stored.
  const unsigned x_scale_at = 4u * (share.scale_row0 + static_cast<unsigned>(warp * 16 + lane / 4));
  float sum[64 * kHalves];
  float partial[64];
#pragma unroll
  for (int i = 0; i < 64 * kHalves; ++i) sum[i] = 0.0f;
  for (int kb = 0; kb < k_blocks; ++kb) {
    hw::mbarrier_wait(full + 8 * static_cast<unsigned>(ring_at.slot), ring_at.phase);
    if (!active) {
      hw::release_pair_slot(empty, ring_at.rank, ring_at.slot);
      ring_at.advance();
      continue;
    }
    const unsigned stage = ring + static_cast<unsigned>(ring_at.slot) * kStageBytes;
    const unsigned sa = stage + share.a_offset, sb = stage + kABytes + share.b_offset;
    const unsigned scales = ring + kScaleOffset + static_cast<unsigned>(ring_at.slot) * kScaleStageBytes;
    float x_scale0 = 0.0f, x_scale1 = 0.0f;
#pragma unroll
    for (int h = 0; h < kHalves; ++h) {
      hw::wgmma_fence();
#pragma unroll
      for (unsigned kk = 0; kk < kKBlock / 32; ++kk) {  // a k32 step is 32 bytes along the swizzled rows
        hw::wgmma_m64n128k32_e4m3(partial, hw::smem_descriptor_k_major_sw128(sa + kk * 32),
                                  hw::smem_descriptor_k_major_sw128(sb + h * kNHalfBytes + kk * 32), kk > 0);
      }
      hw::wgmma_commit_group();
      const float w_scale = hw::ld_shared_f32(scales + kXScaleBytes + (share.w_scale_half + h) * kWScaleBytes +
                                              4u * static_cast<unsigned>(kb % 4));
      if (h == 0) {
        x_scale0 = hw::ld_shared_f32(scales + x_scale_at);
        x_scale1 = hw::ld_shared_f32(scales + x_scale_at + 8 * 4);
      }
      hw::wgmma_wait_group<0>();
      hw::wgmma_fence_operands(partial);
      if (h == kHalves - 1) {
        hw::release_pair_slot(empty, ring_at.rank, ring_at.slot);  // this thread's scale reads are done
        ring_at.advance();
      }
      const float scale0 = x_scale0 * w_scale, scale1 = x_scale1 * w_scale;
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        sum[64 * h + 4 * c] += partial[4 * c] * scale0;
        sum[64 * h + 4 * c + 1] += partial[4 * c + 1] * scale0;
        sum[64 * h + 4 * c + 2] += partial[4 * c + 2] * scale1;
        sum[64 * h + 4 * c + 3] += partial[4 * c + 3] * scale1;
      }
    }
  }
  if (!active) return;
  grouped_pair::store_warp_rows_bf16<kHalves * kNHalf>(sum, staging, warp, lane, share.y, a.n, share.rows);
}

// Consumer warpgroup `half` (0 or 1) over this block's tiles of the pairs it pops from the cluster's queue, as the bf16
// kernel's: a tile of more than 64 valid rows (rows past the group's end are the next group's, or zeros, and are not
// stored): this warpgroup multiplies rows 64·half .. +63 by all 256 columns; a tile of at most 64 (a group's
// remainder): both warpgroups take rows 0..63, this one columns 128·half .. +127, so that the tensor cores compute 64
// rows, not 128, with both warpgroups busy.
__device__ void consume(const Fp8GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank,
                        int half, PairQueue queue) {
  hw::RingCursor<kStages> ring_at;
  ring_at.rank = rank;
  const unsigned staging = ring + kStagingOffset + static_cast<unsigned>(half) * 4 * kWarpStagingBytes;
  PairQueueCursor queue_at;
  for (int pair = queue.pop_warp(queue_at); pair < a.pairs; pair = queue.pop_warp(queue_at)) {
    const BlockTile tile = block_tile(a, pair, rank);
    const GroupPlace place = group_place(a, tile.group);
    const int tile_rows = place.rows - tile.row0;  // ≤ 0 for the zero partner past a group's end
    ConsumerShare share;
    auto* y = static_cast<__nv_bfloat16*>(a.y) + (std::int64_t{place.first_row} + tile.row0) * a.n + tile.col0;
    if (tile_rows <= kGroupedHalfTileRows) {
      share.b_offset = static_cast<unsigned>(half) * kNHalfBytes;
      share.row0 = tile.row0;
      share.rows = tile_rows;
      share.w_scale_half = static_cast<unsigned>(half);
      share.y = y + kNHalf * half;
      consume_tile<1>(a, ring, full, empty, ring_at, share, staging);
    } else {
      share.a_offset = static_cast<unsigned>(half) * kBoxBytes;
      share.row0 = tile.row0 + 64 * half;
      share.rows = tile_rows - 64 * half;
      share.scale_row0 = 64u * static_cast<unsigned>(half);
      share.y = y + std::int64_t{64} * half * a.n;
      consume_tile<2>(a, ring, full, empty, ring_at, share, staging);
    }
  }
  if (threadIdx.x % 32 == 0) hw::bulk_wait_group();  // the last tile's stores are done before the block's exit
}

__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kThreads, 1)
    fp8_grouped_gemm_kernel(const __grid_constant__ Fp8GroupedKernelArgs args) {
  extern __shared__ __align__(1024) std::uint8_t fp8_grouped_smem[];
  // Every consumer thread of both blocks releases a slot, not lane 0 of each warp after a __syncwarp: each thread's
  // ld.shared of the slot's scales then precede its own release in program order, so the producer's next bulk copy
  // into the slot waits for them in a way compute-sanitizer racecheck follows (with one arrival per warp it reported
  // every scale read as a write-after-read hazard against that copy); measured no slower on an H200
  // (docs/performance.md).
  const PairQueue queue{grouped_pair::ring_base(fp8_grouped_smem) + kPairQueueOffset};
  if (threadIdx.x == 0) queue.init(kPairPoppers);  // fenced and published to the cluster by run_cluster_block
  grouped_pair::run_cluster_block<kStages, kBarrierOffset, kProducerRegisters, kConsumerRegisters>(
      fp8_grouped_smem, 2 * kConsumers * kWarpgroupThreads,
      [&](unsigned ring, unsigned full, unsigned empty, unsigned rank) {
        produce(args, ring, full, empty, rank, queue);
      },
      [&](unsigned ring, unsigned full, unsigned empty, unsigned rank, int consumer) {
        consume(args, ring, full, empty, rank, consumer, queue);
      });
}

}  // namespace

bool encode_fp8_grouped_tensor_maps(const void* x, std::int64_t x_rows, const void* w, std::int64_t experts,
                                    std::int64_t n, std::int64_t k, CUtensorMap& x_map, CUtensorMap& w_map) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (!aligned16(x) || !aligned16(w)) return false;
  return encode_fp8_tensor_map_sw128(x_map, x, x_rows, k, k, kGroupedHalfTileRows) &&
         encode_fp8_tensor_map_sw128(w_map, w, experts * n, k, k, kGroupedHalfTileRows);
}

void launch_fp8_grouped_gemm_kernel(const Fp8GroupedKernelArgs& args, cudaStream_t stream) {
  if (args.pairs == 0) return;
  // The pair counter starts at zero in every launch (cluster_pair_queue.cuh), on the launch's stream: also in a graph.
  PARATWIN_CUDA_CHECK(cudaMemsetAsync(args.pair_counter, 0, sizeof(int), stream));
  const int blocks = persistent_pair_blocks(reinterpret_cast<const void*>(fp8_grouped_gemm_kernel), kThreads,
                                            kSmemBytes, args.pairs, "fp8 grouped GEMM kernel");
  fp8_grouped_gemm_kernel<<<blocks, kThreads, kSmemBytes, stream>>>(args);
  PARATWIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace paratwin::cuda
