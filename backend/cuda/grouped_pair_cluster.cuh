#pragma once
// What the two grouped GEMM kernels (grouped_gemm_kernel.cu: bf16; fp8_grouped_gemm_kernel.cu: e4m3 with block
// scales) share: the frame of their warp-specialised clusters of two blocks (one producer warpgroup, consumer
// warpgroups, a ring of stages whose slots both blocks release), the tile a block takes in a pair of
// cuda_plan::decode_grouped_pair, and the epilogue that stores a consumer warp's 16 rows of bf16 results through
// shared memory with the copy engine.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda::grouped_pair {

constexpr int kWarpgroupThreads = 128;
// The output staging: each consumer warp's 16 rows of bf16 results, written from the accumulators and stored to the
// output by the copy engine (one bulk copy per row) while the warp goes on to its next tile. Rows padded by 16 bytes,
// so that the 8 rows a warp's store instruction writes land on different banks.
constexpr unsigned kStagingRowBytes = cuda_plan::kGroupedTileCols * 2 + 16;
constexpr unsigned kWarpStagingBytes = 16 * kStagingRowBytes;

// The tile of this block (rank 0 or 1 of its cluster) in pair `pair` of the schedule's `table`
// (cuda_plan::decode_grouped_pair): a pair sharing W is two row blocks of one column block, a pair sharing X two
// column blocks of one row block.
struct BlockTile {
  int group = 0, row0 = 0, col0 = 0;
  bool shared_weights = true;
};
__device__ inline BlockTile block_tile(const int* table, int groups, int n, int pair, unsigned rank) {
  const auto p = cuda_plan::decode_grouped_pair(table, groups, n / cuda_plan::kGroupedTileCols, pair);
  const bool shared_weights = p.kind == cuda_plan::GroupedPairKind::kSharedWeights;
  const int r = static_cast<int>(rank);
  return {p.group, (p.row_block + (shared_weights ? r : 0)) * cuda_plan::kGroupedTileRows,
          (p.col_block + (shared_weights ? 0 : r)) * cuda_plan::kGroupedTileCols, shared_weights};
}

// Where the ring of stages starts in a block's dynamic shared memory `smem`: at its first 1024-byte boundary (the
// 128-byte swizzle pattern repeats every 1024 bytes; at the same offset in both blocks, which the multicast copies
// rely on).
__device__ inline unsigned ring_base(const std::uint8_t* smem) {
  return (hopper::smem_address(smem) + 1023u) & ~1023u;
}

// A cluster block's life, given its dynamic shared memory `smem`: the ring of stages at ring_base(smem), its kStages
// `full` and then kStages `empty` barriers (8 bytes each) kBarrierOffset bytes into it. Thread 0 initialises the
// `full` barriers (one arrival: the producer's, plus the copies' bytes) and the `empty` ones (`empty_arrivals` each,
// counted over both blocks) and fences its initialisations (also those of barriers it initialised before the call,
// e.g. a cluster_pair_queue.cuh queue's); both blocks' barriers exist before either block's copies or arrivals reach
// them; warpgroup 0 gives up registers and its thread 0 runs produce(ring, full, empty, rank) (rank: the block's in
// its cluster); consumer warpgroup c claims them and runs consume(ring, full, empty, rank, c); and neither block
// leaves while the other may still write its shared memory or barriers.
template <unsigned kStages, unsigned kBarrierOffset, unsigned kProducerRegisters, unsigned kConsumerRegisters,
          typename Produce, typename Consume>
__device__ __forceinline__ void run_cluster_block(const std::uint8_t* smem, unsigned empty_arrivals, Produce&& produce,
                                                  Consume&& consume) {
  namespace hw = hopper;
  const unsigned ring = ring_base(smem);
  const unsigned full = ring + kBarrierOffset;
  const unsigned empty = full + kStages * 8;
  const unsigned rank = hw::cluster_cta_rank();
  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < kStages; ++s) {
      hw::mbarrier_init(full + 8 * s, 1);
      hw::mbarrier_init(empty + 8 * s, empty_arrivals);
    }
    hw::fence_mbarrier_init();
  }
  hw::cluster_sync();
  const int warpgroup = static_cast<int>(threadIdx.x) / kWarpgroupThreads;
  if (warpgroup == 0) {
    hw::warpgroup_release_registers<kProducerRegisters>();
    if (threadIdx.x == 0) produce(ring, full, empty, rank);
    __syncwarp();
  } else {
    hw::warpgroup_claim_registers<kConsumerRegisters>();
    consume(ring, full, empty, rank, warpgroup - 1);
  }
  hw::cluster_sync();
}

// The epilogue of a consumer warp (`warp` of its warpgroup) over kCols columns of its 16 rows: waits until the copy
// engine has read its staging rows (at `staging`, its warpgroup's) for its previous tile, writes the bf16 of `acc`
// (wgmma's accumulator layout: thread t holds rows lane / 4 and + 8 of the warp's 16, columns 8j + 2·(lane % 4) and
// + 1; hopper_ops.cuh) there, and has the copy engine store row r to `y` + (16·warp + r) · `row_stride` for
// 16·warp + r < `rows`, asynchronously: the warp goes on to its next tile meanwhile. (`row_stride` by reference, as
// the kernels' argument it is: passed by value, nvcc 13.0 ordered one multiplication's operands differently.)
template <int kCols>
__device__ __forceinline__ void store_warp_rows_bf16(const float (&acc)[kCols / 2], unsigned staging, int warp,
                                                     int lane, __nv_bfloat16* y, const int& row_stride, int rows) {
  namespace hw = hopper;
  const unsigned warp_staging = staging + static_cast<unsigned>(warp) * kWarpStagingBytes;
  const unsigned at0 = warp_staging + static_cast<unsigned>(lane / 4) * kStagingRowBytes + 4u * (lane % 4);
  const unsigned at8 = at0 + 8 * kStagingRowBytes;
  if (lane == 0) hw::bulk_wait_group_read();  // the previous tile's copies have read the staging rows
  __syncwarp();
#pragma unroll
  for (int j = 0; j < kCols / 8; ++j) {
    hw::st_shared_b32(at0 + 16u * j, hw::pack_bf16x2(acc[4 * j], acc[4 * j + 1]));
    hw::st_shared_b32(at8 + 16u * j, hw::pack_bf16x2(acc[4 * j + 2], acc[4 * j + 3]));
  }
  hw::fence_proxy_async_shared();
  __syncwarp();
  if (lane == 0) {
    const int warp_rows = std::min(16, rows - warp * 16);
    for (int i = 0; i < warp_rows; ++i) {
      hw::bulk_store(y + std::int64_t{warp * 16 + i} * row_stride,
                     warp_staging + static_cast<unsigned>(i) * kStagingRowBytes, kCols * 2);
    }
    hw::bulk_commit_group();
  }
}

}  // namespace paratwin::cuda::grouped_pair
