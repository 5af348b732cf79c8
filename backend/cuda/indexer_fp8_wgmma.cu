// The DSA indexer's scores with fp8 operands on Hopper's warpgroup MMA, as DeepSeek-V3.2 runs its lightning indexer
// (SGLang's indexer over DeepGEMM's fp8_mqa_logits): out[i][j] = k_scale[j] · Σ_h w[i][h] · relu(q[i][h] · k[j]) for 64
// heads of 128 dims, q and k e4m3, k_scale one fp32 per key, w fp32 (launch_indexer_score_fp8's contract, kernels.hpp).
//
// Where q's scale goes: into w. q is quantised per (token, head) (one 128-dim row: one scale s ≥ 0), and
// relu(s · x) = s · relu(x), so the caller passes w[i][h] · s[i][h] (with any softmax scale) as the head weight, as
// SGLang does before it calls fp8_mqa_logits; the kernel sees no q scale. k's per-token scale is ≥ 0 too, so it
// multiplies the finished sum over heads once per score rather than each of the 64 dot products.
//
// Same structure as the bf16 kernel (indexer_wgmma.cu; shared parts in indexer_wgmma_tile.cuh). Keys are the MMA's M
// dimension and (query, head) pairs its N: a 64-key tile of k is A (64 × 128 bytes, K-major), four queries' 64 head
// rows of q are B (256 × 128 bytes, K-major), one wgmma m64n256k32 e4m3 chain of 4 K steps per tile. An e4m3 head row
// is exactly one 128-byte swizzle row, so q and k are each one copy box per row block (the bf16 kernel's rows are two
// 64-dim halves). The fp8 tensor cores run twice the bf16 rate, so a tile's MMA takes half as long while the epilogue
// (relu · w, the sum over heads, the key scale) is the bf16 kernel's: the two consumer warpgroups' alternation, one's
// epilogue under the other's MMA, matters more here.
//
// Precision: e4m3 × e4m3 products are exact in fp32; Hopper's fp8 MMA adds them inside one K=128 chain with a
// reduced-precision internal sum (about 14 significand bits, DeepSeek-V3 technical report §3.3.2), which DeepGEMM
// promotes to fp32 every 128 K elements: the indexer's K is 128, so no promotion is needed.
//
// Block = 3 warpgroups (warp-specialized). Warpgroup 0: one thread loads the block's q rows once and streams k tiles
// through an 8-stage ring (TMA, 128-byte swizzle, completion on mbarriers); its other three warps write −FLT_MAX to
// the keys past the block's last visible position meanwhile. Warpgroups 1 and 2 are consumers, 4 queries each, taking
// turns on the tensor cores (named barriers); each reads its keys' scales of the next tile from L2 while its MMA runs.
#include <cuda.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/device_arch.hpp"
#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/indexer_wgmma_tile.cuh"
#include "backend/cuda/tensor_map.hpp"
#include "backend/cuda_plan/indexer_score_rule.hpp"

namespace paratwin::cuda {
namespace {

namespace hw = hopper;
using namespace indexer_tile;

constexpr int kDimBytes = 128;                                         // one e4m3 head row = one 128-byte swizzle row
constexpr int kStages = 8;                                             // k tiles in flight (8 KB each)
constexpr int kKSteps = kDimBytes / 32;                                // wgmma K = 32 e4m3
constexpr unsigned kQGroupBytes = kGroupQueries * kHeads * kDimBytes;  // a consumer's B operand: 256 rows, 32 KB
constexpr unsigned kKStageBytes = kKeyTile * kDimBytes;                // one k tile: 8 KB
constexpr unsigned kKOffset = kConsumers * kQGroupBytes;               // q first, then the k ring
constexpr unsigned kBarrierOffset = kKOffset + kStages * kKStageBytes;
constexpr unsigned kBarrierCount = 2 * kStages + kConsumers;  // full[stage], empty[stage], q_full[consumer]
constexpr unsigned kSmemBytes = kBarrierOffset + kBarrierCount * 8 + 1024;  // + room to align the base to 1024
static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on sm_90");
static_assert(kHeads == cuda_plan::kFp8IndexerHeads && kDimBytes == cuda_plan::kFp8IndexerHeadDim,
              "the binder's rule (cuda_plan::indexer_score_path) describes this kernel");
static_assert(kFp8TensorMapBoxCols == kDimBytes, "one head row is one copy-box row");
// Registers per thread after re-allocation: 128 accumulators + 64 head weights in each consumer thread.
constexpr unsigned kProducerRegs = 40, kConsumerRegs = 232;
static_assert(kProducerRegs * 128 + kConsumerRegs * 128 * kConsumers <= 65536, "register file");

// Warpgroup 0, warp 0, one thread: the block's q rows once, then the k tiles through the ring.
__device__ void produce(const CUtensorMap* q_map, const CUtensorMap* k_map, unsigned smem, i64 q0, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  for (int c = 0; c < kConsumers; ++c) {
    const unsigned bar = q_full + 8 * static_cast<unsigned>(c);
    const int row = static_cast<int>((q0 + c * kGroupQueries) * kHeads);  // rows past the queries are zero-filled
    hw::mbarrier_arrive_expect_bytes(bar, kQGroupBytes);
    hw::tma_load_2d(smem + static_cast<unsigned>(c) * kQGroupBytes, q_map, bar, 0, row);
  }
  for (int t = 0; t < tiles; ++t) {
    const unsigned s = static_cast<unsigned>(t % kStages);
    const unsigned round = static_cast<unsigned>(t / kStages);
    if (round > 0) hw::mbarrier_wait(empty + 8 * s, (round - 1) & 1);  // the consumers released the stage's last use
    hw::mbarrier_arrive_expect_bytes(full + 8 * s, kKStageBytes);
    hw::tma_load_2d(smem + kKOffset + s * kKStageBytes, k_map, full + 8 * s, 0, t * kKeyTile);  // zeros past the end
  }
}

// The scales of this thread's two key rows of tile t (0 past the last key: those scores are never stored).
__device__ inline void load_key_scales(const float* k_scale, i64 keys, int t, int row0, float (&scale)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const i64 j = static_cast<i64>(t) * kKeyTile + row0 + 8 * r;
    scale[r] = j < keys ? __ldg(k_scale + j) : 0.0f;
  }
}

// Consumer warpgroup `group` (0 or 1): queries q0 + 4·group .. +3 against every computed key tile.
__device__ void consume(const float* k_scale, const float* w, float* out, unsigned smem, int group, i64 q0, i64 queries,
                        i64 keys, i64 q_start, i64 q_stride, bool causal, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  const int thread = static_cast<int>(threadIdx.x) % 128;
  const int warp = thread / 32, lane = thread % 32;
  const i64 group_q0 = q0 + group * kGroupQueries;

  float head_w[32][2];
  load_head_weights(head_w, group_q0, queries, lane, [w](i64 i) { return __ldg(w + i); });
  // After head_weighted_sums this lane holds its output query's scores at keys row0 and row0 + 8.
  const i64 out_q = output_query(group_q0, lane);
  const bool out_valid = out_q < queries;
  const i64 out_pos = q_start + out_q * q_stride;
  float* out_row = out + (out_valid ? out_q : 0) * keys;
  const int row0 = 16 * warp + lane / 4;

  float key_scale[2] = {0.0f, 0.0f}, next_scale[2] = {0.0f, 0.0f};
  if (tiles > 0) {
    load_key_scales(k_scale, keys, 0, row0, key_scale);
    hw::mbarrier_wait(q_full + 8 * static_cast<unsigned>(group), 0);
  }
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
      const unsigned offset = static_cast<unsigned>(ks) * 32;  // 32 e4m3 per step inside the swizzled 128-byte rows
      hw::wgmma_m64n256k32_e4m3(acc, hw::smem_descriptor_k_major_sw128(k_tile + offset),
                                hw::smem_descriptor_k_major_sw128(q_tile + offset), ks > 0);
    }
    hw::wgmma_commit_group();
    if (group == 0) hw::named_barrier_arrive(kTurnSecond, 256);
    if (group == 1 && t + 1 < tiles) hw::named_barrier_arrive(kTurnFirst, 256);
    // The next tile's key scales, from L2 while the MMA runs: ready by the next epilogue.
    if (t + 1 < tiles) load_key_scales(k_scale, keys, t + 1, row0, next_scale);
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(acc);
    // Every consumer thread releases the stage after its own wait (the fp8 grouped kernel's rule: compute-sanitizer
    // racecheck follows the order of each thread's reads before its arrival).
    hw::mbarrier_arrive(empty + 8 * s);

    float score[2];
    head_weighted_sums(acc, head_w, lane, score);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const i64 j = static_cast<i64>(t) * kKeyTile + row0 + 8 * r;
      if (out_valid && j < keys) out_row[j] = causal && j > out_pos ? -FLT_MAX : score[r] * key_scale[r];
      key_scale[r] = next_scale[r];
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1)
    indexer_score_fp8_wgmma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                                   const float* k_scale, const float* w, float* out, i64 queries, i64 keys, i64 q_start,
                                   i64 q_stride, bool causal) {
  extern __shared__ __align__(1024) unsigned char fp8_indexer_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: tiles must start on such a boundary.
  const unsigned smem = (hw::smem_address(fp8_indexer_smem) + 1023u) & ~1023u;
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;

  // The last blocks hold the latest queries, which see the most keys under causality: start them first.
  const i64 q0 = static_cast<i64>(gridDim.x - 1 - blockIdx.x) * kBlockQueries;
  const i64 block_queries = queries - q0 < kBlockQueries ? queries - q0 : kBlockQueries;
  const i64 visible_keys = block_visible_keys(q0, block_queries, keys, q_start, q_stride, causal);
  const int tiles = static_cast<int>((visible_keys + kKeyTile - 1) / kKeyTile);

  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < kStages; ++s) {
      hw::mbarrier_init(full + 8 * s, 1);                  // the producer's arrive (plus the copy's bytes)
      hw::mbarrier_init(empty + 8 * s, 128 * kConsumers);  // every consumer thread
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
      if (threadIdx.x == 0 && tiles > 0) produce(&q_map, &k_map, smem, q0, tiles);
    } else {
      // Keys past every visible position of the block: masked without computing, while the consumers compute.
      mask_keys_past(out, q0, block_queries, keys, static_cast<i64>(tiles) * kKeyTile,
                     static_cast<int>(threadIdx.x) - 32, 96);
    }
  } else {
    hw::warpgroup_claim_registers<kConsumerRegs>();
    consume(k_scale, w, out, smem, warpgroup - 1, q0, queries, keys, q_start, q_stride, causal, tiles);
  }
}

}  // namespace

bool indexer_fp8_wgmma_takes(const void* q, const void* k, i64 queries, i64 keys, i64 heads, i64 dim) {
  const auto aligned16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  return heads == kHeads && dim == kDimBytes && aligned16(q) && aligned16(k) &&
         cuda_plan::fp8_indexer_coordinates_fit(queries, keys) && tensor_map_encoder_available() &&
         current_device_is_sm90();
}

bool launch_indexer_score_fp8_wgmma(const void* q, const void* k, const float* k_scale, const float* w, float* out,
                                    i64 queries, i64 keys, i64 q_start, i64 q_stride, bool causal,
                                    cudaStream_t stream) {
  CUtensorMap q_map{}, k_map{};
  // [rows × 128] e4m3 matrices read in boxes of whole 128-byte rows, 128-byte swizzled, zeros outside.
  if (!encode_fp8_tensor_map_sw128(q_map, q, queries * kHeads, kDimBytes, kDimBytes, kGroupQueries * kHeads) ||
      !encode_fp8_tensor_map_sw128(k_map, k, keys, kDimBytes, kDimBytes, kKeyTile)) {
    return false;
  }
  // Per device (the engine may drive several from one process) and cheap: set on every launch.
  (void)cudaFuncSetAttribute(indexer_score_fp8_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  const i64 blocks = (queries + kBlockQueries - 1) / kBlockQueries;
  indexer_score_fp8_wgmma_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(
      q_map, k_map, k_scale, w, out, queries, keys, q_start, q_stride, causal);
  return true;
}

}  // namespace paratwin::cuda
