// The DSA indexer's scores on Hopper's warpgroup MMA: out[i][j] = Σ_h w[i][h] · relu(q[i][h] · k[j]) for 64 heads of
// 128 dims (launch_indexer_score's contract, kernels.hpp; dispatched from dsa_kernels.cu). Its fp8 twin is
// indexer_fp8_wgmma.cu; what they share (tile geometry, the epilogue over heads) is in indexer_wgmma_tile.cuh.
//
// Shape of the product. Keys are the MMA's M dimension and (query, head) pairs its N dimension: a 64-key tile of k is
// A (64 × 128, K-major), four queries' 64 head rows of q are B (256 × 128, K-major), so one wgmma m64n256k16 chain of 8
// K steps gives a thread two keys' dot products with 16 heads of each of the four queries. relu · w and the sum over
// heads are then sums within the thread's own accumulators plus two quad shuffles; the [q·heads × keys] product never
// leaves the registers.
//
// Block = 3 warpgroups (warp-specialized). Warpgroup 0 is the producer: one thread loads the block's q rows once and
// streams k tiles through a 4-stage ring with the copy engine (TMA, 128-byte swizzle, completion on an mbarrier);
// its other three warps write −FLT_MAX to the keys past the block's last visible position (never computed) meanwhile.
// Warpgroups 1 and 2 are consumers, 4 queries each (8 per block), on the same k tiles: each runs the MMA of a tile,
// then its epilogue, and the two take turns on the tensor cores (named barriers order their issues), so one's
// epilogue overlaps the other's MMA. Both operands are read by the tensor cores from shared memory (no ldmatrix).
#include <cuda.h>
#include <cuda_bf16.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/device_arch.hpp"
#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/indexer_wgmma_tile.cuh"
#include "backend/cuda/tensor_map.hpp"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;
namespace hw = hopper;
using namespace indexer_tile;

constexpr int kDim = 128;
constexpr int kStages = 4;                                                   // k tiles in flight
constexpr int kKSteps = kDim / 16;                                           // wgmma K = 16
constexpr unsigned kSwizzleRowBytes = 128;                                   // 64 dims: one 128-byte swizzle row
constexpr unsigned kQHalfBytes = kGroupQueries * kHeads * kSwizzleRowBytes;  // 256 rows × one 64-dim half: 32 KB
constexpr unsigned kQGroupBytes = 2 * kQHalfBytes;                           // a consumer's B operand: 64 KB
constexpr unsigned kKHalfBytes = kKeyTile * kSwizzleRowBytes;                // 8 KB
constexpr unsigned kKStageBytes = 2 * kKHalfBytes;                           // one k tile: 16 KB
constexpr unsigned kKOffset = kConsumers * kQGroupBytes;                     // q first, then the k ring
constexpr unsigned kBarrierOffset = kKOffset + kStages * kKStageBytes;
constexpr unsigned kBarrierCount = 2 * kStages + kConsumers;  // full[stage], empty[stage], q_full[consumer]
constexpr unsigned kSmemBytes = kBarrierOffset + kBarrierCount * 8 + 1024;  // + room to align the base to 1024
// Registers per thread after re-allocation: 128 accumulators + 64 head weights in each consumer thread.
constexpr unsigned kProducerRegs = 40, kConsumerRegs = 232;
static_assert(hw::warpgroup_registers_fit(kProducerRegs, kConsumerRegs, kConsumers), "the block's registers at launch");

// Warpgroup 0, warp 0, one thread: the block's q rows once, then the k tiles through the ring.
__device__ void produce(const CUtensorMap* q_map, const CUtensorMap* k_map, unsigned smem, i64 q0, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  for (int c = 0; c < kConsumers; ++c) {
    const unsigned bar = q_full + 8 * static_cast<unsigned>(c);
    const unsigned dst = smem + static_cast<unsigned>(c) * kQGroupBytes;
    const int row = static_cast<int>((q0 + c * kGroupQueries) * kHeads);  // rows past the queries are zero-filled
    hw::mbarrier_arrive_expect_bytes(bar, kQGroupBytes);
    hw::tma_load_2d(dst, q_map, bar, 0, row);
    hw::tma_load_2d(dst + kQHalfBytes, q_map, bar, kDim / 2, row);
  }
  for (int t = 0; t < tiles; ++t) {
    const unsigned s = static_cast<unsigned>(t % kStages);
    const unsigned round = static_cast<unsigned>(t / kStages);
    if (round > 0) hw::mbarrier_wait(empty + 8 * s, (round - 1) & 1);  // the consumers released the stage's last use
    const unsigned dst = smem + kKOffset + s * kKStageBytes;
    hw::mbarrier_arrive_expect_bytes(full + 8 * s, kKStageBytes);
    hw::tma_load_2d(dst, k_map, full + 8 * s, 0, t * kKeyTile);  // keys past the end are zero-filled
    hw::tma_load_2d(dst + kKHalfBytes, k_map, full + 8 * s, kDim / 2, t * kKeyTile);
  }
}

// Consumer warpgroup `group` (0 or 1): queries q0 + 4·group .. +3 against every computed key tile.
__device__ void consume(const bf16* w, float* out, unsigned smem, int group, i64 q0, i64 queries, i64 keys, i64 q_start,
                        i64 q_stride, bool causal, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  const int thread = static_cast<int>(threadIdx.x) % 128;
  const int warp = thread / 32, lane = thread % 32;
  const i64 group_q0 = q0 + group * kGroupQueries;

  float head_w[32][2];
  load_head_weights(head_w, group_q0, queries, lane, [w](i64 i) { return __bfloat162float(w[i]); });
  // After head_weighted_sums this lane holds its output query's scores at keys row0 and row0 + 8.
  const i64 out_q = output_query(group_q0, lane);
  const bool out_valid = out_q < queries;
  const i64 out_pos = q_start + out_q * q_stride;
  float* out_row = out + (out_valid ? out_q : 0) * keys;
  const int row0 = 16 * warp + lane / 4;

  if (tiles > 0) hw::mbarrier_wait(q_full + 8 * static_cast<unsigned>(group), 0);
  const unsigned q_tile = smem + static_cast<unsigned>(group) * kQGroupBytes;
  float acc[128];
  for (int t = 0; t < tiles; ++t) {
    const unsigned s = static_cast<unsigned>(t % kStages);
    hw::mbarrier_wait(full + 8 * s, static_cast<unsigned>(t / kStages) & 1);
    // Turns on the tensor cores: the first consumer issues tile t after the second issued tile t − 1, the second
    // after the first issued tile t.
    if (group == 0 && t > 0) hw::named_barrier_sync(kTurnFirst, 256);
    if (group == 1) hw::named_barrier_sync(kTurnSecond, 256);
    const unsigned k_tile = smem + kKOffset + s * kKStageBytes;
    hw::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      // K step ks: 64-dim half ks / 4, 32 bytes (16 dims) per step inside the swizzled 128-byte rows.
      const unsigned offset = static_cast<unsigned>(ks % 4) * 32;
      const auto a = hw::smem_descriptor_k_major_sw128(k_tile + static_cast<unsigned>(ks / 4) * kKHalfBytes + offset);
      const auto b = hw::smem_descriptor_k_major_sw128(q_tile + static_cast<unsigned>(ks / 4) * kQHalfBytes + offset);
      hw::wgmma_m64n256k16_bf16(acc, a, b, ks > 0);
    }
    hw::wgmma_commit_group();
    if (group == 0) hw::named_barrier_arrive(kTurnSecond, 256);
    if (group == 1 && t + 1 < tiles) hw::named_barrier_arrive(kTurnFirst, 256);
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(acc);
    if (lane == 0) hw::mbarrier_arrive(empty + 8 * s);  // this warp's reads of the stage are done

    float score[2];
    head_weighted_sums(acc, head_w, lane, score);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const i64 j = static_cast<i64>(t) * kKeyTile + row0 + 8 * r;
      if (out_valid && j < keys) out_row[j] = causal && j > out_pos ? -FLT_MAX : score[r];
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1)
    indexer_score_wgmma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                               const bf16* w, float* out, i64 queries, i64 keys, i64 q_start, i64 q_stride,
                               bool causal) {
  extern __shared__ __align__(1024) unsigned char wgmma_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: tiles must start on such a boundary.
  const unsigned smem = (hw::smem_address(wgmma_smem) + 1023u) & ~1023u;
  run_indexer_block<kStages, kProducerRegs, kConsumerRegs>(
      smem + kBarrierOffset, 4 * kConsumers,  // one release per consumer warp
      out, queries, keys, q_start, q_stride, causal,
      [&](i64 q0, int tiles) { produce(&q_map, &k_map, smem, q0, tiles); },
      [&](int group, i64 q0, int tiles) {
        consume(w, out, smem, group, q0, queries, keys, q_start, q_stride, causal, tiles);
      });
}

// A [rows × 128] bf16 matrix read in boxes of box_rows rows × 64 dims, 128-byte swizzled, zeros outside; false when
// the driver refuses it.
bool encode_rows_tensor_map(CUtensorMap& map, const void* base, i64 rows, unsigned box_rows) {
  return encode_bf16_tensor_map_sw128(map, base, rows, kDim, kDim * 2, box_rows);
}

}  // namespace

bool indexer_wgmma_takes(const void* q, const void* k, i64 queries, i64 keys, i64 heads, i64 dim) {
  const auto aligned16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  constexpr i64 kMaxCoordinate = 2147483647;
  return heads == kHeads && dim == kDim && aligned16(q) && aligned16(k) && queries > 0 && keys > 0 &&
         (queries + kBlockQueries) * kHeads <= kMaxCoordinate && keys + kKeyTile <= kMaxCoordinate &&
         tensor_map_encoder_available() && current_device_is_sm90();
}

bool launch_indexer_score_wgmma(const void* q, const void* k, const void* w, float* out, i64 queries, i64 keys,
                                i64 q_start, i64 q_stride, bool causal, cudaStream_t stream) {
  CUtensorMap q_map{}, k_map{};
  if (!encode_rows_tensor_map(q_map, q, queries * kHeads, kGroupQueries * kHeads) ||
      !encode_rows_tensor_map(k_map, k, keys, kKeyTile)) {
    return false;
  }
  // Per device (the engine may drive several from one process) and cheap: set on every launch.
  (void)cudaFuncSetAttribute(indexer_score_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  const i64 blocks = (queries + kBlockQueries - 1) / kBlockQueries;
  indexer_score_wgmma_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(
      q_map, k_map, static_cast<const bf16*>(w), out, queries, keys, q_start, q_stride, causal);
  return true;
}

}  // namespace paratwin::cuda
