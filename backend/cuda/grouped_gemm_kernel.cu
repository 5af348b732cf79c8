#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_arch.hpp"
#include "backend/cuda/grouped_gemm_kernel.hpp"
#include "backend/cuda/grouped_pair_cluster.cuh"
#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda/tensor_map.hpp"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda {

namespace {

namespace hw = hopper;
using cuda_plan::kGroupedHalfTileRows;
using cuda_plan::kGroupedTileCols;
using cuda_plan::kGroupedTileDepth;
using cuda_plan::kGroupedTileRows;
using grouped_pair::BlockTile;
using grouped_pair::kWarpgroupThreads;
using grouped_pair::kWarpStagingBytes;

// 3 × 48 KB in flight per block (4 left no room for the output staging below).
constexpr int kStages = 3;
constexpr int kConsumers = 2;  // warpgroups, 64 rows each
constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
constexpr unsigned kRowBytes = kGroupedTileDepth * 2;                // one k stage of one row: one 128-byte swizzle row
constexpr unsigned kABytes = kGroupedTileRows * kRowBytes;           // X tile: 128 rows × 64 k, K-major, 16 KB
constexpr unsigned kAHalfBytes = kGroupedHalfTileRows * kRowBytes;   // its 64-row halves, one copy box each
constexpr unsigned kBBlockBytes = kGroupedTileDepth * 64 * 2;        // W: 64 k-rows × 64 columns, N-major, 8 KB
constexpr unsigned kBBlocks = kGroupedTileCols / 64;                 // 4 such blocks side by side along n
constexpr unsigned kStageBytes = kABytes + kBBlocks * kBBlockBytes;  // 48 KB
// The output staging (grouped_pair_cluster.cuh): 4 warps' rows per consumer.
constexpr unsigned kStagingOffset = kStages * kStageBytes;
constexpr unsigned kBarrierOffset = kStagingOffset + kConsumers * 4 * kWarpStagingBytes;
constexpr unsigned kSmemBytes = kBarrierOffset + 2 * kStages * 8 + 1024;  // + barriers + room to align to 1024
static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on sm_90");
constexpr unsigned kProducerRegisters = 40;  // 128·40 + 256·232 = 64,512: all the block holds at launch (168 · 384)
constexpr unsigned kConsumerRegisters = 232;
static_assert(kGroupedTileDepth == 64 && kTensorMapBoxCols == 64, "one k stage is one 128-byte swizzle row of bf16");
static_assert(kGroupedTileCols == 256 && kGroupedTileRows == kConsumers * 64, "wgmma m64n256 per consumer");
static_assert(hw::warpgroup_registers_fit(kProducerRegisters, kConsumerRegisters, kConsumers),
              "the block's registers at launch");

// The tile of this block (rank 0 or 1 of its cluster) in a pair.
__device__ inline BlockTile block_tile(const GroupedKernelArgs& a, int pair, unsigned rank) {
  return grouped_pair::block_tile(a.schedule, a.groups, a.n, pair, rank);
}

// The producer, one thread per block: for every pair of this cluster, for every k stage, waits until the consumers of
// both blocks have released the ring slot (the multicast writes into both), then has the copy engine fill its part of
// the slot in both blocks: for a pair that shares W, its own X tile (two boxes of 64 rows × 64 k; rows past the group
// read as zeros, as its map ends there) and W boxes 2·rank, 2·rank + 1 (64 k-rows × 64 columns) into both blocks; for
// a pair that shares X, X rows 64·rank .. +63 into both blocks and its own 4 W boxes. Either way each block's `full`
// barrier counts the stage's 48 KB.
__device__ void produce(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank) {
  constexpr std::uint16_t kBothBlocks = 0b11;
  const int k_stages = a.k / kGroupedTileDepth;
  int slot = 0;
  unsigned phase = 0;
  for (int pair = static_cast<int>(blockIdx.x / 2); pair < a.pairs; pair += static_cast<int>(gridDim.x / 2)) {
    const BlockTile tile = block_tile(a, pair, rank);
    const CUtensorMap* w_map = a.maps + tile.group;
    const CUtensorMap* x_map = a.maps + a.groups + tile.group;
    for (int ks = 0; ks < k_stages; ++ks) {
      const unsigned full_bar = full + 8 * static_cast<unsigned>(slot);
      hw::mbarrier_wait(empty + 8 * static_cast<unsigned>(slot), phase ^ 1);  // a fresh barrier reads as released
      const unsigned sa = ring + static_cast<unsigned>(slot) * kStageBytes, sb = sa + kABytes;
      const int k0 = ks * kGroupedTileDepth;
      hw::mbarrier_arrive_expect_bytes(full_bar, kStageBytes);
      if (tile.shared_weights) {
        hw::tma_load_2d(sa, x_map, full_bar, k0, tile.row0);
        hw::tma_load_2d(sa + kAHalfBytes, x_map, full_bar, k0, tile.row0 + kGroupedHalfTileRows);
#pragma unroll
        for (unsigned b = 2 * rank; b < 2 * rank + 2; ++b) {
          hw::tma_load_2d_multicast(sb + b * kBBlockBytes, w_map, full_bar, tile.col0 + static_cast<int>(b) * 64, k0,
                                    kBothBlocks);
        }
      } else {
        hw::tma_load_2d_multicast(sa + rank * kAHalfBytes, x_map, full_bar, k0,
                                  tile.row0 + static_cast<int>(rank) * kGroupedHalfTileRows, kBothBlocks);
#pragma unroll
        for (unsigned b = 0; b < kBBlocks; ++b) {
          hw::tma_load_2d(sb + b * kBBlockBytes, w_map, full_bar, tile.col0 + static_cast<int>(b) * 64, k0);
        }
      }
      if (++slot == kStages) {
        slot = 0;
        phase ^= 1;
      }
    }
  }
}

// One consumer warpgroup's share of one tile: 64 rows × kCols columns, its X rows `a_offset` bytes into the stage's X
// tile and its W columns `b_offset` bytes into the stage's W tile. Per k stage: waits for the slot, issues 4 wgmma k16
// steps as one group, waits for the previous group and releases its slot (one wgmma group stays in flight while the
// next slot is awaited). Then the epilogue: waits until the copy engine has read this warp's staging rows (at
// `staging`) for its previous tile, writes the bf16 results there, and has the copy engine store row r to row r of `y`
// (rows a.n apart) for r < `rows`, asynchronously: the warp goes on to its next tile meanwhile.
template <int kCols>
__device__ void consume_tile(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty,
                             hw::RingCursor<kStages>& ring_at, unsigned a_offset, unsigned b_offset, unsigned staging,
                             __nv_bfloat16* y, int rows) {
  static_assert(kCols == 256 || kCols == 128, "wgmma m64n256 or m64n128");
  const int t = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int warp = t / 32, lane = t % 32;
  const int k_stages = a.k / kGroupedTileDepth;
  float acc[kCols / 2];
  int held = -1;  // the slot read by the wgmma group still in flight
  for (int ks = 0; ks < k_stages; ++ks) {
    hw::mbarrier_wait(full + 8 * static_cast<unsigned>(ring_at.slot), ring_at.phase);
    hw::wgmma_fence();
    const unsigned stage = ring + static_cast<unsigned>(ring_at.slot) * kStageBytes;
    const unsigned sa = stage + a_offset, sb = stage + kABytes + b_offset;
#pragma unroll
    for (unsigned kk = 0; kk < kGroupedTileDepth / 16; ++kk) {
      // A K-major: a k16 step is 32 bytes along the swizzled rows. B N-major: a k16 step is 16 k-rows of 128 bytes.
      const auto desc_a = hw::smem_descriptor_k_major_sw128(sa + kk * 32);
      const auto desc_b = hw::smem_descriptor_mn_major_sw128(sb + kk * 16 * kRowBytes, kBBlockBytes);
      if constexpr (kCols == 256) {
        hw::wgmma_m64n256k16_bf16<hw::WgmmaB::kNMajor>(acc, desc_a, desc_b, ks > 0 || kk > 0);
      } else {
        hw::wgmma_m64n128k16_bf16<hw::WgmmaB::kNMajor>(acc, desc_a, desc_b, ks > 0 || kk > 0);
      }
    }
    hw::wgmma_commit_group();
    hw::wgmma_wait_group<1>();
    if (held >= 0 && lane == 0) hw::release_pair_slot(empty, ring_at.rank, held);
    held = ring_at.slot;
    ring_at.advance();
  }
  hw::wgmma_wait_group<0>();
  hw::wgmma_fence_operands(acc);
  if (lane == 0) hw::release_pair_slot(empty, ring_at.rank, held);
  grouped_pair::store_warp_rows_bf16<kCols>(acc, staging, warp, lane, y, a.n, rows);
}

// Consumer warpgroup `half` (0 or 1) over this block's tiles. A tile of more than 64 valid rows: this warpgroup
// multiplies rows 64·half .. +63 by all 256 columns (the rows past the group's end read as zeros and are not stored).
// A tile of at most 64 valid rows (a group's remainder): both warpgroups take rows 0..63, this one columns
// 128·half .. +127, so that the tensor cores compute 64 rows, not 128, with both warpgroups busy.
__device__ void consume(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank,
                        int half) {
  hw::RingCursor<kStages> ring_at;
  ring_at.rank = rank;
  const unsigned staging = ring + kStagingOffset + static_cast<unsigned>(half) * 4 * kWarpStagingBytes;
  for (int pair = static_cast<int>(blockIdx.x / 2); pair < a.pairs; pair += static_cast<int>(gridDim.x / 2)) {
    const BlockTile tile = block_tile(a, pair, rank);
    const int tile_rows = a.schedule[2 * tile.group] - tile.row0;  // ≤ 0 for the zero partner past a group's end
    auto* y =
        static_cast<__nv_bfloat16*>(a.table[2 * a.groups + tile.group]) + std::int64_t{tile.row0} * a.n + tile.col0;
    if (tile_rows <= kGroupedHalfTileRows) {
      consume_tile<128>(a, ring, full, empty, ring_at, 0, static_cast<unsigned>(half) * 2 * kBBlockBytes, staging,
                        y + 128 * half, tile_rows);
    } else {
      consume_tile<256>(a, ring, full, empty, ring_at, static_cast<unsigned>(half) * kAHalfBytes, 0, staging,
                        y + std::int64_t{64} * half * a.n, tile_rows - 64 * half);
    }
  }
  if (threadIdx.x % 32 == 0) hw::bulk_wait_group();  // the last tile's stores are done before the block's exit
}

__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kThreads, 1)
    grouped_gemm_kernel(const __grid_constant__ GroupedKernelArgs args) {
  extern __shared__ __align__(1024) std::uint8_t grouped_smem[];
  grouped_pair::run_cluster_block<kStages, kBarrierOffset, kProducerRegisters, kConsumerRegisters>(
      grouped_smem, 2 * kConsumers * 4,  // one release per consumer warp of both blocks
      [&](unsigned ring, unsigned full, unsigned empty, unsigned rank) { produce(args, ring, full, empty, rank); },
      [&](unsigned ring, unsigned full, unsigned empty, unsigned rank, int consumer) {
        consume(args, ring, full, empty, rank, consumer);
      });
}

}  // namespace

bool encode_grouped_tensor_maps(void* const* table, const int* rows, int groups, int n, int k, CUtensorMap* maps) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  for (int g = 0; g < groups; ++g) {
    const void* w = table[g];
    const void* x = table[groups + g];
    const void* y = table[2 * groups + g];
    if (!aligned16(w) || !aligned16(x) || !aligned16(y)) return false;  // y: the bulk stores' 16-byte rule
    if (!encode_bf16_tensor_map_sw128(maps[g], w, k, n, std::int64_t{n} * 2, kGroupedTileDepth) ||
        !encode_bf16_tensor_map_sw128(maps[groups + g], x, rows[g], k, std::int64_t{k} * 2, kGroupedHalfTileRows)) {
      return false;
    }
  }
  return true;
}

void launch_grouped_gemm_kernel(const GroupedKernelArgs& args, cudaStream_t stream) {
  if (args.pairs == 0) return;
  const int blocks = persistent_pair_blocks(reinterpret_cast<const void*>(grouped_gemm_kernel), kThreads, kSmemBytes,
                                            args.pairs, "grouped GEMM kernel");
  grouped_gemm_kernel<<<blocks, kThreads, kSmemBytes, stream>>>(args);
  PARATWIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace paratwin::cuda
