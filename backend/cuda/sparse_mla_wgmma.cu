// Index-sparse MLA attention on Hopper's warpgroup MMA (sparse_mla_attention.hpp; the same computation as the
// mma.sync kernel of sparse_mla_attention.cu, which it replaces on sm_90a).
//
// Block = one query's 64 heads (the wgmma M extent) and 3 warpgroups, warp-specialized:
// - warpgroup 0 (producer) gathers the query's selected latent rows 64 at a time (a key tile: 64 rows × 576 dims,
//   72 KB) into a 2-stage ring with cp.async (the rows are picked by index, so the copy engine's tiled loads do not
//   apply), 128-byte swizzled as the tensor cores read them; a stage's completion reaches the consumers through an
//   mbarrier (cp.async.mbarrier.arrive) together with the tile's key-valid flags;
// - warpgroups 1 and 2 (consumers) split each tile: consumer w multiplies half of the 576 dims (288w …) of Q·Kᵀ for
//   all 64 heads × 64 keys (wgmma m64n64k16, Q and K from shared memory: each operand byte is read once per block,
//   where splitting by keys read Q twice), the two swap the partial scores of each other's 32 keys through shared
//   memory the tile no longer needs, then each owns the scores of keys 32w … 32w + 31: the two exchange their row
//   maxima, write their halves of P (bf16) into one shared 64 × 64 tile, and each accumulates value dims 256w … of
//   O += P·V over all 64 keys (wgmma m64n256k16, P K-major and V read N-major from the same latent rows). O (64 × 256
//   fp32 per consumer) and the softmax state stay in registers.
// Measured variants that lost (H200, docs/performance.md): scores split by keys (m64n32k16, Q read twice), the next
// tile's scores queued behind P·V (delays the stage's release, so the gather of the tile after waits).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/device_arch.hpp"
#include "backend/cuda/hopper_ops.cuh"
#include "backend/cuda/sparse_mla_attention.hpp"
#include "backend/cuda/tensor_core_ops.cuh"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;
namespace hw = hopper;

constexpr int kDimQk = 576, kDimV = 512;
constexpr int kHeads = 64;                            // per block: the wgmma M extent
constexpr int kKeyTile = 64;                          // keys per stage
constexpr int kConsumers = 2;                         // consumer warpgroups
constexpr int kConsumerKeys = kKeyTile / kConsumers;  // 32 scores per head and tile per consumer
constexpr int kConsumerDims = kDimV / kConsumers;     // 256 value dims per consumer
constexpr int kThreads = 128 * (1 + kConsumers);
constexpr int kStages = 2;
constexpr int kDimBlocks = kDimQk / 64;                          // 9 swizzled blocks of 64 dims per row
constexpr unsigned kRowBytes = 128;                              // 64 bf16: one 128-byte swizzle row
constexpr unsigned kDimBlockBytes = 64 * kRowBytes;              // 64 rows (heads or keys) × 64 dims: 8 KB
constexpr unsigned kOperandBytes = kDimBlocks * kDimBlockBytes;  // Q, or one key tile: 72 KB
constexpr unsigned kStageOffset = kOperandBytes;                 // Q first, then the ring, then P
constexpr unsigned kPOffset = kStageOffset + kStages * kOperandBytes;
constexpr unsigned kBarrierOffset = kPOffset + kDimBlockBytes;                // full[stage], empty[stage]
constexpr unsigned kValidOffset = kBarrierOffset + 2 * kStages * 8;           // int [stage][key]
constexpr unsigned kMaxOffset = kValidOffset + kStages * kKeyTile * 4;        // float [consumer][head]: tile row maxima
constexpr unsigned kSumOffset = kMaxOffset + kConsumers * kHeads * 4;         // float [consumer][head]: row sums
constexpr unsigned kSmemBytes = kSumOffset + kConsumers * kHeads * 4 + 1024;  // + room to align the base to 1024
static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
// Named barriers of the two consumers (0 is __syncthreads).
constexpr unsigned kMaxesWritten = 1, kPWritten = 2, kScoresDone = 3, kPartialsWritten = 4;
// Registers per thread after re-allocation: 128 O accumulators + 32 partial scores in each consumer thread; the
// producer's unrolled copies spill at 40.
constexpr unsigned kProducerRegs = 56, kConsumerRegs = 224;
static_assert(hw::warpgroup_registers_fit(kProducerRegs, kConsumerRegs, kConsumers), "the block's registers at launch");

// Makes `bar` track this thread's cp.async copies issued so far: once they have all landed, the barrier receives one
// arrival that counts towards its expected arrivals (.noinc: the init count includes it). The copies are ordinary
// (generic-proxy) writes: a thread that waits on the barrier must execute fence.proxy.async before the tensor cores
// read them.
__device__ inline void cp_async_mbarrier_arrive_noinc(unsigned bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// Byte offset of 16-byte chunk `chunk` (0–71) of row `row` in an operand of kDimBlocks swizzled 64-dim blocks: the
// chunk's 16-byte slot inside its 128-byte row is XOR-ed with the row's low 3 bits (the 128-byte swizzle).
__device__ inline unsigned swizzled_chunk(int row, int chunk) {
  return static_cast<unsigned>((chunk / 8) * static_cast<int>(kDimBlockBytes) + row * static_cast<int>(kRowBytes) +
                               (((chunk % 8) ^ (row & 7)) * 16));
}

struct QueryView {
  i64 query_row;  // b·q_tokens + qi
  i64 h0;         // first head of the block
  i64 position;   // the query's position, for the causal mask
  const bf16* kv_base;
};

// Warpgroup 0: the q rows once, then every key tile through the ring. Thread p copies the 16-byte chunks p % 8 + 8i
// of rows p / 8 + 16r: a warp reads four full rows' 128-byte lines per instruction.
__device__ void produce(const AttentionArgs& a, const QueryView& v, unsigned smem, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages;
  int* key_valid = reinterpret_cast<int*>(__cvta_shared_to_generic(smem + kValidOffset));
  const int thread = static_cast<int>(threadIdx.x), sub = thread % 8, row0 = thread / 8;
  const bf16* q = static_cast<const bf16*>(a.q) + v.query_row * a.q_row_stride + v.h0 * kDimQk;
#pragma unroll
  for (int r = 0; r < kHeads / 16; ++r) {
    const int row = row0 + 16 * r;
#pragma unroll
    for (int i = 0; i < kDimBlocks; ++i) {
      const int chunk = sub + 8 * i;
      tc::cp_async_16(smem + swizzled_chunk(row, chunk), q + row * kDimQk + chunk * 8, true);
    }
  }
  const int* index = a.key_index + v.query_row * a.keys_per_query;
  const i64 keys = a.keys_per_query;
  // The next tile's key indices, loaded before waiting for its stage: their latency stays off the gather's path.
  int next[kKeyTile / 16];
#pragma unroll
  for (int r = 0; r < kKeyTile / 16; ++r) next[r] = row0 + 16 * r < keys ? index[row0 + 16 * r] : -1;
  for (int t = 0; t < tiles; ++t) {
    int j[kKeyTile / 16];
#pragma unroll
    for (int r = 0; r < kKeyTile / 16; ++r) {
      j[r] = next[r];
      const i64 slot = static_cast<i64>(t + 1) * kKeyTile + row0 + 16 * r;
      next[r] = slot < keys ? index[slot] : -1;
    }
    const unsigned s = static_cast<unsigned>(t % kStages);
    const unsigned round = static_cast<unsigned>(t / kStages);
    if (round > 0) hw::mbarrier_wait(empty + 8 * s, (round - 1) & 1);  // the consumers released the stage's last use
    const unsigned stage = smem + kStageOffset + s * kOperandBytes;
#pragma unroll
    for (int r = 0; r < kKeyTile / 16; ++r) {
      const int row = row0 + 16 * r;
      // Keys not selected (−1), out of range or after the query: zero rows, flagged invalid (masked to −inf).
      bool valid = j[r] >= 0 && j[r] < a.kv_tokens;
      if (valid && a.causal) valid = a.kv_start + j[r] * a.kv_stride <= v.position;
      if (sub == 0) key_valid[s * kKeyTile + static_cast<unsigned>(row)] = valid ? 1 : 0;
      const bf16* src = valid ? v.kv_base + j[r] * a.k_row_stride : v.kv_base;
#pragma unroll
      for (int i = 0; i < kDimBlocks; ++i) {
        const int chunk = sub + 8 * i;
        tc::cp_async_16(stage + swizzled_chunk(row, chunk), src + chunk * 8, valid);
      }
    }
    // Two arrivals per producer thread: one when its copies (tile 0: and the q rows) have landed, one now that
    // releases its flag writes.
    cp_async_mbarrier_arrive_noinc(full + 8 * s);
    hw::mbarrier_arrive(full + 8 * s);
  }
}

// Consumer warpgroup w (0 or 1): dims 288w … of each tile's scores, then keys 32w … of its softmax, value dims 256w …
// of the output. A template parameter, so that the descriptors of its dims and the exchange's regions are constants
// (with a run-time w the compiler kept them live across tiles and spilled).
template <int w>
__device__ void consume(const AttentionArgs& a, const QueryView& v, unsigned smem, int tiles) {
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages;
  const int* key_valid = reinterpret_cast<const int*>(__cvta_shared_to_generic(smem + kValidOffset));
  float* tile_maxima = reinterpret_cast<float*>(__cvta_shared_to_generic(smem + kMaxOffset));
  float* row_sums = reinterpret_cast<float*>(__cvta_shared_to_generic(smem + kSumOffset));
  const int thread = static_cast<int>(threadIdx.x) % 128;
  const int warp = thread / 32, lane = thread % 32;
  // This thread's accumulator rows (heads) 16·warp + lane / 4 + 8h, columns 8c + 2·(lane % 4) + e.
  const int row[2] = {16 * warp + lane / 4, 16 * warp + lane / 4 + 8};
  const float scale_log2 = a.scale * 1.4426950408889634f;

  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const unsigned p_tile = smem + kPOffset;

  for (int t = 0; t < tiles; ++t) {
    const unsigned s = static_cast<unsigned>(t % kStages);
    hw::mbarrier_wait(full + 8 * s, static_cast<unsigned>(t / kStages) & 1);
    hw::fence_proxy_async_shared();  // the producer's cp.async writes (generic proxy) before the tensor cores read
    const unsigned stage = smem + kStageOffset + s * kOperandBytes;

    // S = Q · Kᵀ split by dims: this consumer's 18 K steps of 16 (dims 288w …) for all 64 keys (m64n64k16: the
    // operands read from shared memory once per block instead of Q twice), then each consumer sends the other the
    // partial sums of the other's 32 keys through shared memory the tile no longer needs once both have multiplied:
    // consumer 0 through the stage's last dim block (read by the scores only), consumer 1 through the P tile (both
    // free once the two consumers' score MMAs are done: each finished its previous P·V before these). Thread-indexed
    // words: no bank conflicts.
    float sc[16];
    {
      float part[32] = {};
      hw::wgmma_fence();
#pragma unroll
      for (int i = 0; i < kDimQk / 32; ++i) {
        const int ks = w * (kDimQk / 32) + i;
        const unsigned block = static_cast<unsigned>(ks / 4) * kDimBlockBytes,
                       step = static_cast<unsigned>(ks % 4) * 32;
        const auto desc_q = hw::smem_descriptor_k_major_sw128(smem + block + step);
        const auto desc_k = hw::smem_descriptor_k_major_sw128(stage + block + step);
        hw::wgmma_m64n64k16_bf16(part, desc_q, desc_k, i > 0);
      }
      hw::wgmma_commit_group();
      hw::wgmma_wait_group<0>();
      hw::wgmma_fence_operands(part);
      hw::named_barrier_sync(kScoresDone, 128 * kConsumers);
      const unsigned exchange0 = stage + (kDimBlocks - 1) * kDimBlockBytes, exchange1 = p_tile;
      float* out_partials = reinterpret_cast<float*>(__cvta_shared_to_generic(w == 0 ? exchange0 : exchange1));
      const float* in_partials =
          reinterpret_cast<const float*>(__cvta_shared_to_generic(w == 0 ? exchange1 : exchange0));
#pragma unroll
      for (int i = 0; i < 16; ++i) out_partials[i * 128 + thread] = w == 0 ? part[16 + i] : part[i];
      hw::named_barrier_sync(kPartialsWritten, 128 * kConsumers);
#pragma unroll
      for (int i = 0; i < 16; ++i) sc[i] = (w == 0 ? part[i] : part[16 + i]) + in_partials[i * 128 + thread];
    }

    // Online softmax in base 2. Masked keys score −inf; the tile's row maxima are exchanged with the other consumer.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int c = 0; c < 4; ++c) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = w * kConsumerKeys + 8 * c + 2 * (lane % 4) + (e & 1);
        float& x = sc[4 * c + e];
        x = key_valid[s * kKeyTile + static_cast<unsigned>(key)] != 0 ? x * scale_log2 : -INFINITY;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      if (lane % 4 == 0) tile_maxima[w * kHeads + row[h]] = tile_max[h];
    }
    hw::named_barrier_sync(kMaxesWritten, 128 * kConsumers);
    float corr[2], base[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float new_max = fmaxf(row_max[h], fmaxf(tile_max[h], tile_maxima[(1 - w) * kHeads + row[h]]));
      base[h] = new_max == -INFINITY ? 0.0f : new_max;  // no key seen yet: every p is 0
      corr[h] = exp2f(row_max[h] - base[h]);
      row_max[h] = new_max;
      row_sum[h] *= corr[h];
    }
    // This consumer's 32 columns of P (64 heads × 64 keys, bf16, K-major, 128-byte swizzled: the A operand of P·V).
#pragma unroll
    for (int c = 0; c < 4; ++c) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float p0 = exp2f(sc[4 * c + 2 * h] - base[h]), p1 = exp2f(sc[4 * c + 2 * h + 1] - base[h]);
        row_sum[h] += p0 + p1;
        const int slot = (w * kConsumerKeys / 8 + c) ^ (row[h] & 7);
        hw::st_shared_b32(p_tile + static_cast<unsigned>(row[h]) * kRowBytes + static_cast<unsigned>(slot * 16) +
                              static_cast<unsigned>(lane % 4) * 4,
                          hw::pack_bf16x2(p0, p1));
      }
    }
    hw::fence_proxy_async_shared();  // P's ordinary stores before the tensor cores read them
    hw::named_barrier_sync(kPWritten, 128 * kConsumers);

    // Rescale O only where a row maximum grew (after the first tiles, rarely): a warp-uniform branch.
    if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < 128; ++i) o[i] *= corr[(i / 2) % 2];
    }
    // O (64 heads × this consumer's 256 value dims) += P · V over the tile's 64 keys: 4 K steps of 16 keys. V is the
    // first 512 dims of the same rows, read N-major: 64-dim blocks 8 KB apart along n, 16 keys = 2048 bytes per step.
    hw::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKeyTile / 16; ++kk) {
      const auto desc_p = hw::smem_descriptor_k_major_sw128(p_tile + static_cast<unsigned>(kk) * 32);
      const auto desc_v =
          hw::smem_descriptor_mn_major_sw128(stage + static_cast<unsigned>(w * kConsumerDims / 64) * kDimBlockBytes +
                                                 static_cast<unsigned>(kk) * 16 * kRowBytes,
                                             kDimBlockBytes);
      hw::wgmma_m64n256k16_bf16<hw::WgmmaB::kNMajor>(o, desc_p, desc_v, true);
    }
    hw::wgmma_commit_group();
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(o);
    // This thread's reads of the stage are done (the MMAs' by the wait above; its flags and the swapped partial
    // scores by ordinary loads). Every consumer thread arrives: an arrival releases only its own thread's accesses
    // (with lane 0 arriving for its warp after a __syncwarp, racecheck reported the producer's refill as racing with
    // the other lanes' loads).
    hw::mbarrier_arrive(empty + 8 * s);
  }

  // Each consumer summed the probabilities of its own keys: add the other's.
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 1);
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 2);
    if (lane % 4 == 0) row_sums[w * kHeads + row[h]] = row_sum[h];
  }
  hw::named_barrier_sync(kMaxesWritten, 128 * kConsumers);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float total = row_sum[h] + row_sums[(1 - w) * kHeads + row[h]];
    inv[h] = total > 0.0f ? 1.0f / total : 0.0f;
  }
  bf16* out = static_cast<bf16*>(a.out) + v.query_row * a.out_row_stride + v.h0 * kDimV + w * kConsumerDims;
#pragma unroll
  for (int c = 0; c < kConsumerDims / 8; ++c) {
    const int col = 8 * c + 2 * (lane % 4);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      *reinterpret_cast<__nv_bfloat162*>(out + row[h] * kDimV + col) =
          __floats2bfloat162_rn(o[4 * c + 2 * h] * inv[h], o[4 * c + 2 * h + 1] * inv[h]);
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1) sparse_mla_wgmma_kernel(AttentionArgs a) {
  extern __shared__ __align__(1024) unsigned char mla_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: operands must start on such a boundary.
  const unsigned smem = (hw::smem_address(mla_smem) + 1023u) & ~1023u;
  const unsigned full = smem + kBarrierOffset, empty = full + 8 * kStages;

  const i64 head_blocks = a.heads / kHeads;
  QueryView v{};
  v.query_row = blockIdx.x / head_blocks;
  v.h0 = (blockIdx.x % head_blocks) * kHeads;
  const i64 b = v.query_row / a.q_tokens, qi = v.query_row % a.q_tokens;
  v.position = a.q_start + qi * a.q_stride;
  v.kv_base = static_cast<const bf16*>(a.k) + b * a.kv_batch_rows * a.k_row_stride;
  const int tiles = static_cast<int>((a.keys_per_query + kKeyTile - 1) / kKeyTile);

  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < kStages; ++s) {
      hw::mbarrier_init(full + 8 * s, 2 * 128);            // per producer thread: its copies landed + its flags written
      hw::mbarrier_init(empty + 8 * s, 128 * kConsumers);  // one arrive per consumer thread
    }
    hw::fence_mbarrier_init();
  }
  __syncthreads();

  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
  if (warpgroup == 0) {
    hw::warpgroup_release_registers<kProducerRegs>();
    produce(a, v, smem, tiles);
  } else {
    hw::warpgroup_claim_registers<kConsumerRegs>();
    if (warpgroup == 1) {
      consume<0>(a, v, smem, tiles);
    } else {
      consume<1>(a, v, smem, tiles);
    }
  }
}

}  // namespace

bool sparse_mla_wgmma_takes(const AttentionArgs& a) {
  return sparse_mla_attention_takes(a) && current_device_is_sm90();
}

void launch_sparse_mla_wgmma(const AttentionArgs& a, cudaStream_t stream) {
  const i64 blocks = a.batch * a.q_tokens * (a.heads / kHeads);
  if (blocks == 0) return;
  // Per device (the engine may drive several from one process) and cheap: set on every launch.
  (void)cudaFuncSetAttribute(sparse_mla_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  sparse_mla_wgmma_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(a);
}

}  // namespace paratwin::cuda
