// The DSA indexer's scores with fp8 operands on Hopper's warpgroup MMA, as DeepSeek-V3.2 runs its lightning indexer
// (SGLang's indexer over DeepGEMM's fp8_mqa_logits): out[i][j] = k_scale[j] · Σ_h w[i][h] · relu(q[i][h] · k[j]) for 64
// heads of 128 dims, q and k e4m3, k_scale one fp32 per key, w fp32 (launch_indexer_score_fp8's contract, kernels.hpp).
//
// Where q's scale goes: into w. q is quantised per (token, head) (one 128-dim row: one scale s ≥ 0), and
// relu(s · x) = s · relu(x), so the caller passes w[i][h] · s[i][h] (with any softmax scale) as the head weight, as
// SGLang does before it calls fp8_mqa_logits; the kernel sees no q scale. k's per-token scale is ≥ 0 too, so it
// multiplies the finished sum over heads once per score rather than each of the 64 dot products.
//
// The bf16 kernel's block (indexer_wgmma.cu; shared parts in indexer_wgmma_tile.cuh) with its consumers' tile split
// in two. Keys are the MMA's M dimension and (query, head) pairs its N: a 64-key tile of k is A (64 × 128 bytes,
// K-major); a consumer's four queries' 64 head rows of q are B as two pairs of queries (128 × 128 bytes each,
// K-major), one wgmma m64n128k32 e4m3 chain of 4 K steps per pair and tile. An e4m3 head row is exactly one 128-byte
// swizzle row, so q and k are each one copy box per row block (the bf16 kernel's rows are two 64-dim halves).
// Why pairs: the fp8 tensor cores run twice the bf16 rate, so a tile's MMAs take half as long while the epilogue
// (relu · w, the sum over heads, the key scale: 2 fp32 instructions per accumulator) is the bf16 kernel's, and the
// bf16 kernel's scheme (one m64n256 chain per tile, the two consumers taking turns so that one's epilogue runs under
// the other's MMAs) left the tensor cores idle for much of each tile: 0.62-0.64 of the fp8 GEMM rate, against 0.73-0.75
// with pairs, where each consumer keeps one pair's MMAs in flight while it runs the other pair's epilogue
// (docs/performance.md, "The indexer in fp8 on wgmma").
//
// Precision: e4m3 × e4m3 products are exact in fp32; Hopper's fp8 MMA adds them inside one K=128 chain with a
// reduced-precision internal sum (about 14 significand bits, DeepSeek-V3 technical report §3.3.2), which DeepGEMM
// promotes to fp32 every 128 K elements: the indexer's K is 128, so no promotion is needed.
//
// Block = 3 warpgroups (warp-specialized). Warpgroup 0: one thread loads the block's q rows once and streams k tiles
// through an 8-stage ring (TMA, 128-byte swizzle, completion on mbarriers); its other three warps write −FLT_MAX to
// the keys past the block's last visible position meanwhile. Warpgroups 1 and 2 are consumers, 4 queries each (two
// pairs), each with its own MMAs queued on the tensor cores; each reads its keys' scales of the next tile from L2
// while its MMAs run.
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
constexpr unsigned kQGroupBytes = kGroupQueries * kHeads * kDimBytes;  // a consumer's 4 queries: 256 rows, 32 KB
constexpr unsigned kQPairBytes = kQGroupBytes / 2;                     // one MMA's B operand: 2 queries, 128 rows
constexpr unsigned kKStageBytes = kKeyTile * kDimBytes;                // one k tile: 8 KB
constexpr unsigned kKOffset = kConsumers * kQGroupBytes;               // q first, then the k ring
constexpr unsigned kBarrierOffset = kKOffset + kStages * kKStageBytes;
constexpr unsigned kBarrierCount = 2 * kStages + kConsumers;  // full[stage], empty[stage], q_full[consumer]
constexpr unsigned kSmemBytes = kBarrierOffset + kBarrierCount * 8 + 1024;  // + room to align the base to 1024
static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on sm_90");
static_assert(kHeads == cuda_plan::kFp8IndexerHeads && kDimBytes == cuda_plan::kFp8IndexerHeadDim,
              "the binder's rule (cuda_plan::indexer_score_path) describes this kernel");
static_assert(kFp8TensorMapBoxCols == kDimBytes, "one head row is one copy-box row");
// Registers per thread after re-allocation: 2 × 64 accumulators + 64 head weights in each consumer thread.
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

// The scale of this lane's key row of tile t (0 past the last key: those scores are never stored).
__device__ inline float load_key_scale(const float* k_scale, i64 keys, int t, int row) {
  const i64 j = static_cast<i64>(t) * kKeyTile + row;
  return j < keys ? __ldg(k_scale + j) : 0.0f;
}

// One m64n128 half of a consumer's tile: the 64 keys at k_tile × the 64 head rows of its query pair kPair.
template <int kPair>
__device__ __forceinline__ void issue_pair_mma(float (&acc)[64], unsigned k_tile, unsigned q_tile) {
  const unsigned q_pair = q_tile + static_cast<unsigned>(kPair) * kQPairBytes;
  hw::wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    const unsigned offset = static_cast<unsigned>(ks) * 32;  // 32 e4m3 per step inside the swizzled 128-byte rows
    hw::wgmma_m64n128k32_e4m3(acc, hw::smem_descriptor_k_major_sw128(k_tile + offset),
                              hw::smem_descriptor_k_major_sw128(q_pair + offset), ks > 0);
  }
  hw::wgmma_commit_group();
}

// Where a lane's finished scores of one query pair go.
struct PairOutput {
  float* row;  // the lane's query's output row
  i64 pos;     // its position (causal mask)
  bool valid;  // a query of the batch
};

// The epilogue of one query pair of tile t: relu · w, the sum over heads, the key scale; one score per lane.
template <int kPair>
__device__ __forceinline__ void store_pair_scores(const float (&acc)[64], const float (&head_w)[32][2],
                                                  const PairOutput& pair_out, int lane, int row, float key_scale, int t,
                                                  i64 keys, bool causal) {
  const float score = pair_head_weighted_sum(acc, head_w, kPair, lane);
  const i64 j = static_cast<i64>(t) * kKeyTile + row;
  if (pair_out.valid && j < keys) pair_out.row[j] = causal && j > pair_out.pos ? -FLT_MAX : score * key_scale;
}

// Consumer warpgroup `group` (0 or 1): queries q0 + 4·group .. +3 against every computed key tile, as two m64n128
// pairs of 2 queries each so that one pair's epilogue runs under the other pair's MMAs (below).
__device__ void consume(const float* k_scale, const float* w, float* out, unsigned smem, int group, i64 q0, i64 queries,
                        i64 keys, i64 q_start, i64 q_stride, bool causal, int tiles) {
  if (tiles == 0) return;
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages, q_full = empty + 8 * kStages;
  const int thread = static_cast<int>(threadIdx.x) % 128;
  const int warp = thread / 32, lane = thread % 32;
  const i64 group_q0 = q0 + group * kGroupQueries;

  float head_w[32][2];
  load_head_weights(head_w, group_q0, queries, lane, [w](i64 i) { return __ldg(w + i); });
  PairOutput pair_out[2];
#pragma unroll
  for (int pair = 0; pair < 2; ++pair) {
    const i64 out_q = pair_output_query(group_q0, pair, lane);
    pair_out[pair].valid = out_q < queries;
    pair_out[pair].pos = q_start + out_q * q_stride;
    pair_out[pair].row = out + (pair_out[pair].valid ? out_q : 0) * keys;
  }
  const int row = 16 * warp + lane / 4 + 8 * pair_key_half(lane);  // the lane's key row in every tile
  const unsigned q_tile = smem + static_cast<unsigned>(group) * kQGroupBytes;
  const auto k_tile = [smem](int t) { return smem + kKOffset + static_cast<unsigned>(t % kStages) * kKStageBytes; };
  const auto wait_full = [full](int t) {
    hw::mbarrier_wait(full + 8 * static_cast<unsigned>(t % kStages), static_cast<unsigned>(t / kStages) & 1);
  };
  const auto release = [empty](int t) { hw::mbarrier_arrive(empty + 8 * static_cast<unsigned>(t % kStages)); };

  // Per tile t: pair 1's MMAs of t run under pair 0's epilogue of t, pair 0's MMAs of t + 1 under pair 1's epilogue of
  // t; with the other consumer's MMAs also queued, the tensor cores idle only while neither has one issued. No wgmma
  // group stays in flight across the loop's back edge: with one there, ptxas (CUDA 13.0) serialized every wgmma of
  // the kernel (info C7514), so the loop waits for pair 0's next MMAs at its end and the last tile is peeled. Every
  // consumer thread releases a stage after its own wait for the stage's last MMAs (the fp8 grouped kernel's rule:
  // compute-sanitizer racecheck follows the order of each thread's reads before its arrival).
  float acc0[64], acc1[64];
  float key_scale = load_key_scale(k_scale, keys, 0, row);
  hw::mbarrier_wait(q_full + 8 * static_cast<unsigned>(group), 0);
  wait_full(0);
  issue_pair_mma<0>(acc0, k_tile(0), q_tile);
  hw::wgmma_wait_group<0>();
  hw::wgmma_fence_operands(acc0);
  for (int t = 0; t < tiles - 1; ++t) {
    issue_pair_mma<1>(acc1, k_tile(t), q_tile);
    const float next_scale = load_key_scale(k_scale, keys, t + 1, row);  // from L2 under the MMAs
    store_pair_scores<0>(acc0, head_w, pair_out[0], lane, row, key_scale, t, keys, causal);
    wait_full(t + 1);
    issue_pair_mma<0>(acc0, k_tile(t + 1), q_tile);
    hw::wgmma_wait_group<1>();
    hw::wgmma_fence_operands(acc1);
    release(t);
    store_pair_scores<1>(acc1, head_w, pair_out[1], lane, row, key_scale, t, keys, causal);
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(acc0);
    key_scale = next_scale;
  }
  const int last = tiles - 1;
  issue_pair_mma<1>(acc1, k_tile(last), q_tile);
  store_pair_scores<0>(acc0, head_w, pair_out[0], lane, row, key_scale, last, keys, causal);
  hw::wgmma_wait_group<0>();
  hw::wgmma_fence_operands(acc1);
  release(last);
  store_pair_scores<1>(acc1, head_w, pair_out[1], lane, row, key_scale, last, keys, causal);
}

__global__ void __launch_bounds__(kThreads, 1)
    indexer_score_fp8_wgmma_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                                   const float* k_scale, const float* w, float* out, i64 queries, i64 keys, i64 q_start,
                                   i64 q_stride, bool causal) {
  extern __shared__ __align__(1024) unsigned char fp8_indexer_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: tiles must start on such a boundary.
  const unsigned smem = (hw::smem_address(fp8_indexer_smem) + 1023u) & ~1023u;
  run_indexer_block<kStages, kProducerRegs, kConsumerRegs>(
      smem + kBarrierOffset, 128 * kConsumers,  // every consumer thread releases (consume says why)
      out, queries, keys, q_start, q_stride, causal,
      [&](i64 q0, int tiles) { produce(&q_map, &k_map, smem, q0, tiles); },
      [&](int group, i64 q0, int tiles) {
        consume(k_scale, w, out, smem, group, q0, queries, keys, q_start, q_stride, causal, tiles);
      });
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
