#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/grouped_gemm_kernel.hpp"
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

// Ping-pong: each consumer warpgroup takes one column half of every tile of the block (128 rows × 128 columns, fp32
// accumulators: 128 registers per thread), warpgroup 0 the left halves, warpgroup 1 the right ones, so that the ring
// carries the halves one after the other (each stage one k stage of one half) and one warpgroup's epilogue runs while
// the other's wgmma keep the tensor cores busy.
constexpr int kStages = 7;  // 7 × 32 KB in flight per block: the epilogue stores from registers, no staging
constexpr int kWarpgroupThreads = 128;
constexpr int kConsumers = 2;  // warpgroups, one column half each
constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
constexpr int kHalfCols = kGroupedTileCols / kConsumers;             // 128
// Named barriers of the consumers' turns on the tensor cores (0 is __syncthreads): warpgroup 0 starts a half once
// warpgroup 1 has waited for every stage of its previous half, warpgroup 1 once warpgroup 0 has for its half of the
// same tile. Besides the overlap, the turns keep each warpgroup's next stage within one phase of its slot's barrier,
// which a wait on the phase's parity needs (without them warpgroup 1 took a stage of warpgroup 0's for its own).
constexpr unsigned kTurnFirst = 1, kTurnSecond = 2;
constexpr unsigned kTurnThreads = kConsumers * kWarpgroupThreads;
constexpr unsigned kRowBytes = kGroupedTileDepth * 2;                // one k stage of one row: one 128-byte swizzle row
constexpr unsigned kABytes = kGroupedTileRows * kRowBytes;           // X tile: 128 rows × 64 k, K-major, 16 KB
constexpr unsigned kAHalfBytes = kGroupedHalfTileRows * kRowBytes;   // its 64-row halves, one copy box each
constexpr unsigned kBBlockBytes = kGroupedTileDepth * 64 * 2;        // W: 64 k-rows × 64 columns, N-major, 8 KB
constexpr unsigned kBBlocks = kHalfCols / 64;                        // 2 such blocks side by side along n
constexpr unsigned kStageBytes = kABytes + kBBlocks * kBBlockBytes;  // 32 KB
constexpr unsigned kBarrierOffset = kStages * kStageBytes;
constexpr unsigned kSmemBytes = kBarrierOffset + 2 * kStages * 8 + 1024;  // + barriers + room to align to 1024
static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on sm_90");
constexpr unsigned kProducerRegisters = 40;  // 128·40 + 256·232 = 64,512 ≤ the 65,536 of the register file
constexpr unsigned kConsumerRegisters = 232;
static_assert(kGroupedTileDepth == 64 && kTensorMapBoxCols == 64, "one k stage is one 128-byte swizzle row of bf16");
static_assert(kHalfCols == 128 && kGroupedTileRows == 2 * 64, "two wgmma m64n128 per warpgroup and k16 step");
static_assert(kProducerRegisters * 128 + kConsumerRegisters * 128 * kConsumers <= 65536, "register file");

// The tile of this block (rank 0 or 1 of its cluster) in a pair.
struct BlockTile {
  int group = 0, row0 = 0, col0 = 0;
  bool shared_weights = true;
};
__device__ inline BlockTile block_tile(const GroupedKernelArgs& a, int pair, unsigned rank) {
  const auto p = cuda_plan::decode_grouped_pair(a.schedule, a.groups, a.n / kGroupedTileCols, pair);
  const bool shared_weights = p.kind == cuda_plan::GroupedPairKind::kSharedWeights;
  const int r = static_cast<int>(rank);
  return {p.group, (p.row_block + (shared_weights ? r : 0)) * kGroupedTileRows,
          (p.col_block + (shared_weights ? 0 : r)) * kGroupedTileCols, shared_weights};
}

// This block's part of k stage `ks` of column half `half` of `tile`, as the producer copies it: for a pair that shares
// W, its own X tile (two boxes of 64 rows × 64 k; rows past the group read as zeros, as its map ends there) and W box
// `rank` of the half (64 k-rows × 64 columns) multicast into both blocks; for a pair that shares X, X rows 64·rank ..
// +63 multicast into both blocks and the half's 2 W boxes. Either way each block receives 32 KB.
__device__ inline void copy_stage(const GroupedKernelArgs& a, const BlockTile& tile, int half, int ks, unsigned rank,
                                  unsigned sa, unsigned full_bar) {
  constexpr std::uint16_t kBothBlocks = 0b11;
  const CUtensorMap* w_map = a.maps + tile.group;
  const CUtensorMap* x_map = a.maps + a.groups + tile.group;
  const unsigned sb = sa + kABytes;
  const int k0 = ks * kGroupedTileDepth;
  const int col = tile.col0 + half * kHalfCols;
  if (tile.shared_weights) {
    hw::tma_load_2d(sa, x_map, full_bar, k0, tile.row0);
    hw::tma_load_2d(sa + kAHalfBytes, x_map, full_bar, k0, tile.row0 + kGroupedHalfTileRows);
    hw::tma_load_2d_multicast(sb + rank * kBBlockBytes, w_map, full_bar, col + static_cast<int>(rank) * 64, k0,
                              kBothBlocks);
  } else {
    hw::tma_load_2d_multicast(sa + rank * kAHalfBytes, x_map, full_bar, k0,
                              tile.row0 + static_cast<int>(rank) * kGroupedHalfTileRows, kBothBlocks);
#pragma unroll
    for (unsigned b = 0; b < kBBlocks; ++b) {
      hw::tma_load_2d(sb + b * kBBlockBytes, w_map, full_bar, col + static_cast<int>(b) * 64, k0);
    }
  }
}

// The ring's sequence for this cluster, as the producer walks it: its pairs in turn, each pair's left column half then
// its right one, each half k stage by k stage.
struct StageWalk {
  int pair = 0, half = 0, ks = 0;
  BlockTile tile;
  __device__ StageWalk(const GroupedKernelArgs& a, unsigned rank) : pair(static_cast<int>(blockIdx.x / 2)) {
    if (pair < a.pairs) tile = block_tile(a, pair, rank);
  }
  [[nodiscard]] __device__ bool done(const GroupedKernelArgs& a) const { return pair >= a.pairs; }
  __device__ void advance(const GroupedKernelArgs& a, unsigned rank) {
    if (++ks < a.k / kGroupedTileDepth) return;
    ks = 0;
    if (++half < kConsumers) return;
    half = 0;
    pair += static_cast<int>(gridDim.x / 2);
    if (pair < a.pairs) tile = block_tile(a, pair, rank);
  }
};

// The producer, one thread per block: for every stage of the walk, waits until the consumers of both blocks have
// released the ring slot (the multicast writes into both), then has the copy engine fill its part of the slot in both
// blocks (copy_stage); each block's `full` barrier counts the stage's 32 KB.
__device__ void produce(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank) {
  int slot = 0;
  unsigned phase = 0;
  for (StageWalk at(a, rank); !at.done(a); at.advance(a, rank)) {
    const unsigned full_bar = full + 8 * static_cast<unsigned>(slot);
    hw::mbarrier_wait(empty + 8 * static_cast<unsigned>(slot), phase ^ 1);  // a fresh barrier reads as released
    hw::mbarrier_arrive_expect_bytes(full_bar, kStageBytes);
    copy_stage(a, at.tile, at.half, at.ks, rank, ring + static_cast<unsigned>(slot) * kStageBytes, full_bar);
    if (++slot == kStages) {
      slot = 0;
      phase ^= 1;
    }
  }
}

// One consumer warp is done reading ring slot `slot`: tells both blocks of the cluster, whose producers both write it
// (the other block's barrier through a remote arrival at CTA scope: docs/performance.md has what cluster scope cost).
__device__ inline void release_slot(unsigned empty, unsigned rank, int slot) {
  hw::mbarrier_arrive(empty + 8 * static_cast<unsigned>(slot));
  hw::mbarrier_arrive_cluster(empty + 8 * static_cast<unsigned>(slot), rank ^ 1);
}

// The ring position a consumer warpgroup reads next: advanced stage by stage through its own halves, and past the
// other warpgroup's.
struct RingCursor {
  unsigned rank = 0;  ///< this block's in its cluster
  int slot = 0;
  unsigned phase = 0;
  __device__ void advance() { skip(1); }
  __device__ void skip(int stages) {
    const int to = slot + stages;
    phase ^= static_cast<unsigned>(to / kStages) & 1u;
    slot = to % kStages;
  }
};

// One consumer warpgroup's column half of one tile: kRowBlocks × 64 rows (2, or 1 for a tile of at most 64 valid rows,
// a group's remainder, so that the tensor cores compute 64 rows, not 128) × 128 columns. Per k stage: waits for the
// slot, issues 4 wgmma k16 steps (each one m64n128 per 64 rows) as one group, waits for the previous group and
// releases its slot (one wgmma group stays in flight while the next slot is awaited). Once every stage was waited for,
// passes the turn to the other warpgroup (named barrier `next_turn`, none where 0). Then the epilogue: stores the
// results as bf16 from the accumulators to rows r < `rows` of `y` (rows a.n apart) while the other warpgroup's wgmma
// run on its own half.
template <int kRowBlocks>
__device__ void consume_half(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty,
                             RingCursor& ring_at, unsigned next_turn, __nv_bfloat16* y, int rows) {
  static_assert(kRowBlocks == 1 || kRowBlocks == 2, "64 or 128 rows");
  const int t = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int warp = t / 32, lane = t % 32;
  const int k_stages = a.k / kGroupedTileDepth;
  float acc[kRowBlocks][kHalfCols / 2];
  int held = -1;  // the slot read by the wgmma group still in flight
  for (int ks = 0; ks < k_stages; ++ks) {
    hw::mbarrier_wait(full + 8 * static_cast<unsigned>(ring_at.slot), ring_at.phase);
    hw::wgmma_fence();
    const unsigned sa = ring + static_cast<unsigned>(ring_at.slot) * kStageBytes, sb = sa + kABytes;
#pragma unroll
    for (unsigned kk = 0; kk < kGroupedTileDepth / 16; ++kk) {
      // A K-major: a k16 step is 32 bytes along the swizzled rows. B N-major: a k16 step is 16 k-rows of 128 bytes.
      const auto desc_b = hw::smem_descriptor_mn_major_sw128(sb + kk * 16 * kRowBytes, kBBlockBytes);
#pragma unroll
      for (int m = 0; m < kRowBlocks; ++m) {
        const auto desc_a = hw::smem_descriptor_k_major_sw128(sa + static_cast<unsigned>(m) * kAHalfBytes + kk * 32);
        hw::wgmma_m64n128k16_bf16<hw::WgmmaB::kNMajor>(acc[m], desc_a, desc_b, ks > 0 || kk > 0);
      }
    }
    hw::wgmma_commit_group();
    hw::wgmma_wait_group<1>();
    if (held >= 0 && lane == 0) release_slot(empty, ring_at.rank, held);
    held = ring_at.slot;
    ring_at.advance();
  }
  if (next_turn != 0) hw::named_barrier_arrive(next_turn, kTurnThreads);
  hw::wgmma_wait_group<0>();
#pragma unroll
  for (int m = 0; m < kRowBlocks; ++m) hw::wgmma_fence_operands(acc[m]);
  if (lane == 0) release_slot(empty, ring_at.rank, held);
  // Thread t holds rows lane / 4 and + 8 of its warp's 16 in each 64-row block, columns 8j + 2·(lane % 4) and + 1
  // (hopper_ops.cuh).
#pragma unroll
  for (int m = 0; m < kRowBlocks; ++m) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 64 * m + 16 * warp + lane / 4 + 8 * h;
      if (row >= rows) continue;
      __nv_bfloat16* y_row = y + std::int64_t{row} * a.n + 2 * (lane % 4);
#pragma unroll
      for (int j = 0; j < kHalfCols / 8; ++j) {
        *reinterpret_cast<__nv_bfloat162*>(y_row + 8 * j) =
            __floats2bfloat162_rn(acc[m][4 * j + 2 * h], acc[m][4 * j + 2 * h + 1]);
      }
    }
  }
}

// Consumer warpgroup `half` (0 or 1) over this block's tiles: column half `half` of each (the rows past the group's
// end read as zeros and are not stored), skipping the other warpgroup's half in the ring, in turns with it.
__device__ void consume(const GroupedKernelArgs& a, unsigned ring, unsigned full, unsigned empty, unsigned rank,
                        int half) {
  const int k_stages = a.k / kGroupedTileDepth;
  const int first = static_cast<int>(blockIdx.x / 2), step = static_cast<int>(gridDim.x / 2);
  RingCursor ring_at;
  ring_at.rank = rank;
  ring_at.skip(half * k_stages);
  for (int pair = first; pair < a.pairs; pair += step) {
    if (half == 0 && pair != first) hw::named_barrier_sync(kTurnFirst, kTurnThreads);
    if (half == 1) hw::named_barrier_sync(kTurnSecond, kTurnThreads);
    const unsigned next_turn = half == 0 ? kTurnSecond : (pair + step < a.pairs ? kTurnFirst : 0);
    const BlockTile tile = block_tile(a, pair, rank);
    const int tile_rows = a.schedule[2 * tile.group] - tile.row0;  // ≤ 0 for the zero partner past a group's end
    auto* y = static_cast<__nv_bfloat16*>(a.table[2 * a.groups + tile.group]) + std::int64_t{tile.row0} * a.n +
              tile.col0 + kHalfCols * half;
    if (tile_rows <= kGroupedHalfTileRows) {
      consume_half<1>(a, ring, full, empty, ring_at, next_turn, y, tile_rows);
    } else {
      consume_half<2>(a, ring, full, empty, ring_at, next_turn, y, tile_rows);
    }
    ring_at.skip((kConsumers - 1) * k_stages);
  }
}

__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kThreads, 1)
    grouped_gemm_kernel(const __grid_constant__ GroupedKernelArgs args) {
  extern __shared__ __align__(1024) std::uint8_t grouped_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: align the ring (at the same offset in both blocks, which
  // the multicast copies rely on).
  const unsigned ring = (hw::smem_address(grouped_smem) + 1023u) & ~1023u;
  const unsigned full = ring + kBarrierOffset;  // kStages mbarriers of 8 bytes
  const unsigned empty = full + kStages * 8;
  const unsigned rank = hw::cluster_cta_rank();
  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < kStages; ++s) {
      hw::mbarrier_init(full + 8 * s, 1);                    // the producer's arrive (plus the copies' bytes)
      hw::mbarrier_init(empty + 8 * s, 2 * 4);  // one arrival per warp of both blocks' consumer of the stage
    }
    hw::fence_mbarrier_init();
  }
  hw::cluster_sync();  // both blocks' barriers exist before either block's copies or arrivals reach them
  const int warpgroup = static_cast<int>(threadIdx.x) / kWarpgroupThreads;
  if (warpgroup == 0) {
    hw::warpgroup_release_registers<kProducerRegisters>();
    if (threadIdx.x == 0) produce(args, ring, full, empty, rank);
    __syncwarp();
  } else {
    hw::warpgroup_claim_registers<kConsumerRegisters>();
    consume(args, ring, full, empty, rank, warpgroup - 1);
  }
  hw::cluster_sync();  // neither block leaves while the other may still write its shared memory or barriers
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
  // Per device (the engine may drive several from one process) and cheap: set on every launch.
  PARATWIN_CUDA_CHECK(
      cudaFuncSetAttribute(grouped_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  // As many clusters as fit at once (a cluster's two blocks share a GPC, whose multiprocessors may be odd in number).
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(2);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kSmemBytes;
  config.stream = stream;
  int clusters = 0;
  PARATWIN_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, grouped_gemm_kernel, &config));
  PARATWIN_ASSERT(clusters >= 1, "the grouped GEMM kernel fits no cluster on this device");
  const int blocks = 2 * std::min(args.pairs, clusters);
  grouped_gemm_kernel<<<blocks, kThreads, kSmemBytes, stream>>>(args);
  PARATWIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace paratwin::cuda
