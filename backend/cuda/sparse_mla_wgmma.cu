// Index-sparse MLA attention on Hopper's warpgroup MMA (sparse_mla_attention.hpp; the same computation as the
// mma.sync kernel of sparse_mla_attention.cu, which it replaces on sm_90a).
//
// Block = one query's 64 heads (the wgmma M extent) and 3 warpgroups, warp-specialized. Key tiles (64 selected
// latent rows × 576 dims, 72 KB) come in pairs: a pair's even tile lands in buffer 0, its odd tile in buffer 1.
// - Warpgroup 0 (producer) gathers the rows with cp.async (they are picked by index, so the copy engine's tiled loads
//   do not apply), 128-byte swizzled as the tensor cores read them, each buffer in two halves with their own full and
//   empty mbarriers: the left half (dims 0–255) and the right half (dims 256–575). A buffer's key-valid flags travel
//   with the first half filled.
// - Warpgroup 1 (consumer 0) owns the even tile's scores, warpgroup 2 (consumer 1) the odd tile's (all 576 dims:
//   wgmma m64n64k16, Q and K from shared memory), so one consumer's softmax runs while the other's score MMAs keep the
//   tensor cores busy. Consumer 0 passes its row maxima to consumer 1, which returns the pair's maxima (through
//   mbarriers, below); each then multiplies its own probabilities from registers and the other's from shared memory
//   into its half of O: consumer 0 the value dims 0–255, consumer 1 the dims 256–511 (wgmma m64n256k16, V read
//   N-major from the rows). A half buffer is released as soon as its last reader's MMA is done, so the producer
//   refills it while the other half is in use, and a tile's score MMAs start on the half its consumer released first
//   while the other half is still being gathered. Every thread that read or wrote a half arrives on its empty barrier
//   (an arrival releases only its own thread's shared-memory accesses). The softmax's reference maximum moves only
//   when a tile exceeds it by more than 2^8 (next_reference), so O is rarely rescaled.
// - At the end each consumer writes its 64 × 256 output tile into Q's region and copies it out one 512-byte row per
//   bulk copy (finish).
// The schedule follows the one FlashMLA's sparse prefill kernel describes (written anew here). Measured variants that
// lost (H200, docs/performance.md): one tile at a time with the scores split by keys or by dims between the consumers
// (the tile's scores → softmax → P·V chain left the tensor cores idle during the softmax); consumer 1's second P·V
// queued behind its first, consumer 0's next scores queued behind its last P·V, L2 cache hints on the gather (no
// gain or slower).
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
constexpr int kHeads = 64;            // per block: the wgmma M extent
constexpr int kKeyTile = 64;          // keys per buffer
constexpr int kHalfDims = kDimV / 2;  // value dims per consumer: 256
constexpr int kThreads = 128 * 3;
constexpr int kDimBlocks = kDimQk / 64;              // 9 swizzled blocks of 64 dims per row
constexpr int kLeftBlocks = kHalfDims / 64;          // blocks 0–3 form a buffer's left half, 4–8 its right half
constexpr unsigned kRowBytes = 128;                  // 64 bf16: one 128-byte swizzle row
constexpr unsigned kDimBlockBytes = 64 * kRowBytes;  // 64 rows (heads or keys) × 64 dims: 8 KB
constexpr unsigned kOperandBytes = kDimBlocks * kDimBlockBytes;  // Q, or one key tile: 72 KB
// Shared memory: Q, buffers 0 and 1, consumer 1's probabilities (consumer 0's go to buffer 0's last dim block, which
// only consumer 0's score MMAs read), the barriers and small arrays.
constexpr unsigned kBufferOffset = kOperandBytes;
constexpr unsigned kP1Offset = kBufferOffset + 2 * kOperandBytes;
constexpr unsigned kP0InBuffer0 = (kDimBlocks - 1) * kDimBlockBytes;
// full[buffer][half], empty[…][…], maxima_ready[consumer], sums_ready[consumer]
constexpr unsigned kBarrierOffset = kP1Offset + kDimBlockBytes;
constexpr unsigned kValidOffset = kBarrierOffset + 12 * 8;           // int [buffer][key]
constexpr unsigned kMaxOffset = kValidOffset + 2 * kKeyTile * 4;     // float [consumer][head]: the pair's maxima
constexpr unsigned kSumOffset = kMaxOffset + 2 * kHeads * 4;         // float [consumer][head]: row sums
constexpr unsigned kSmemBytes = kSumOffset + 2 * kHeads * 4 + 1024;  // + room to align the base to 1024
// The output tiles at the end (finish), one per consumer in Q's region: rows of 256 bf16 + 16 bytes, so that the 4
// lanes of each of a warp's 8 rows store to 32 different banks.
constexpr unsigned kOutRowBytes = kHalfDims * 2 + 16;
static_assert(2 * kHeads * kOutRowBytes <= kOperandBytes, "both output tiles fit in Q's region");
static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
// Named barriers between the two consumers (0 is __syncthreads): one arrives, the other waits. The row maxima and row
// sums, which both consumers load with ordinary loads, go through mbarriers instead (maxima_ready, sums_ready):
// racecheck follows a thread's own mbarrier arrive → another thread's wait, but reported consumer 1's maxima stores
// against consumer 0's loads when a named barrier ordered them (arrive → sync, and also both consumers syncing;
// docs/performance.md). The P tiles are read by the tensor cores, which racecheck does not track.
constexpr unsigned kP0Ready = 1, kP1Ready = 2;
// The softmax's reference maximum moves only when a tile's maximum exceeds it by more than this (base 2): below that
// the probabilities stay ≤ 2^8 (bf16 keeps the same relative precision at any magnitude, the fp32 sums cannot
// overflow), and O is rescaled only in the rare tile that moves it, not on every new row maximum (128 accumulators,
// up to twice per pair and consumer): 6.4 % faster on the H200 (docs/performance.md).
constexpr float kMaxSlackLog2 = 8.0f;
// Registers per thread after re-allocation: 128 O accumulators + 32 scores + 16 packed probabilities per consumer
// thread; the producer's unrolled copies spill at 40.
constexpr unsigned kProducerRegs = 56, kConsumerRegs = 224;
static_assert(hw::warpgroup_registers_fit(kProducerRegs, kConsumerRegs, 2), "the block's registers at launch");

enum Half : unsigned { kLeft = 0, kRight = 1 };
__device__ inline unsigned full_barrier(unsigned smem, int buffer, Half half) {
  return smem + kBarrierOffset + 8 * (2 * static_cast<unsigned>(buffer) + half);
}
__device__ inline unsigned empty_barrier(unsigned smem, int buffer, Half half) {
  return full_barrier(smem, buffer, half) + 4 * 8;
}
// Completes once every thread of consumer `consumer` has stored its share of that consumer's row maxima (and, being
// past its own loads of the other's, released them for the next pair).
__device__ inline unsigned maxima_ready(unsigned smem, int consumer) {
  return smem + kBarrierOffset + 8 * (8 + static_cast<unsigned>(consumer));
}
// Completes once every thread of consumer `consumer` has stored its share of the row sums (once, at the end).
__device__ inline unsigned sums_ready(unsigned smem, int consumer) {
  return smem + kBarrierOffset + 8 * (10 + static_cast<unsigned>(consumer));
}

// Waits for the phase of parity `parity` of `bar` with the spin loop in C++ and reconverges the warp after it: the
// loop inside hopper_ops.cuh's mbarrier_wait is invisible to the compiler, which then cannot reconverge a warp whose
// lanes leave it at different iterations before the next .aligned instruction (wgmma, bar.sync).
__device__ inline void wait_converged(unsigned bar, unsigned parity) {
  for (;;) {
    unsigned done = 0;
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%1], %2;\n"
        "selp.u32 %0, 1, 0, done;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
    if (done != 0) break;
  }
  __syncwarp();
}

// The consumers' named barriers, reached by converged warps (also after a lane-conditional store).
__device__ inline void consumers_arrive(unsigned id) {
  __syncwarp();
  hw::named_barrier_arrive(id, 256);
}
__device__ inline void consumers_sync(unsigned id) {
  __syncwarp();
  hw::named_barrier_sync(id, 256);
}

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

// ---- producer ----------------------------------------------------------------------------------------------------

// The latent rows a producer thread copies of one tile (rows row0 + 16r, r < 4): the selected key's row, or −1 for a
// key not selected (−1), out of range or after the query (a zero row, flagged invalid: masked to −inf). Row numbers
// rather than pointers: half the producer's registers (it spilled with pointers).
struct TileRows {
  int key[kKeyTile / 16];
};

__device__ inline TileRows tile_rows(const AttentionArgs& a, const QueryView& v, const int (&index)[kKeyTile / 16]) {
  TileRows rows{};
#pragma unroll
  for (int r = 0; r < kKeyTile / 16; ++r) {
    bool valid = index[r] >= 0 && index[r] < a.kv_tokens;
    if (valid && a.causal) valid = a.kv_start + index[r] * a.kv_stride <= v.position;
    rows.key[r] = valid ? index[r] : -1;
  }
  return rows;
}

// Copies dim blocks [first, last) of this thread's rows into `buffer`; with `flags`, also writes the tile's key-valid
// flags (released by the barrier's ordinary arrival below).
// `slot` = the thread's swizzled_chunk(row0, sub): its rows 16 apart keep their low 3 bits, so every chunk it copies
// sits at slot + 2048·r + 8192·i (immediate offsets; computing swizzled_chunk per copy spilled the producer).
template <int first, int last>
__device__ inline void copy_half(const AttentionArgs& a, const QueryView& v, unsigned buffer, const TileRows& rows,
                                 int row0, int sub, unsigned slot, int* flags, unsigned full) {
#pragma unroll
  for (int r = 0; r < kKeyTile / 16; ++r) {
    const bool valid = rows.key[r] >= 0;
    if (flags != nullptr && sub == 0) flags[row0 + 16 * r] = valid ? 1 : 0;
    const bf16* src = v.kv_base + (valid ? rows.key[r] * a.k_row_stride : 0) + sub * 8;
#pragma unroll
    for (int i = first; i < last; ++i) {
      tc::cp_async_16(
          buffer + slot + static_cast<unsigned>(r) * 16 * kRowBytes + static_cast<unsigned>(i) * kDimBlockBytes,
          src + 64 * i, valid);
    }
  }
  // Two arrivals per producer thread: one when its copies (the first time: and the q rows) have landed, one now that
  // releases its flag writes.
  cp_async_mbarrier_arrive_noinc(full);
  hw::mbarrier_arrive(full);
}

// The key indices of this thread's rows of pair `pair`'s two tiles (−1 past the query's keys).
__device__ inline void load_indices(const int* index, i64 keys, int pair, int row0, int (&even)[kKeyTile / 16],
                                    int (&odd)[kKeyTile / 16]) {
#pragma unroll
  for (int r = 0; r < kKeyTile / 16; ++r) {
    const i64 slot = static_cast<i64>(2 * pair) * kKeyTile + row0 + 16 * r;
    even[r] = slot < keys ? index[slot] : -1;
    odd[r] = slot + kKeyTile < keys ? index[slot + kKeyTile] : -1;
  }
}

// Warpgroup 0: the q rows once, then each pair of tiles half by half in the order the consumers free them: buffer 0's
// left half (consumer 0 frees it first), buffer 1's right half, buffer 0's right half, buffer 1's left half. Thread p
// copies the 16-byte chunks p % 8 + 8i of rows p / 8 + 16r: a warp reads four full rows' 128-byte lines per
// instruction.
__device__ void produce(const AttentionArgs& a, const QueryView& v, unsigned smem, int pairs) {
  int* key_valid = reinterpret_cast<int*>(__cvta_shared_to_generic(smem + kValidOffset));
  const int thread = static_cast<int>(threadIdx.x), sub = thread % 8, row0 = thread / 8;
  const unsigned slot = swizzled_chunk(row0, sub);
  const bf16* q = static_cast<const bf16*>(a.q) + v.query_row * a.q_row_stride + v.h0 * kDimQk;
#pragma unroll
  for (int r = 0; r < kHeads / 16; ++r) {
#pragma unroll
    for (int i = 0; i < kDimBlocks; ++i) {
      tc::cp_async_16(
          smem + slot + static_cast<unsigned>(r) * 16 * kRowBytes + static_cast<unsigned>(i) * kDimBlockBytes,
          q + (row0 + 16 * r) * kDimQk + sub * 8 + 64 * i, true);
    }
  }
  const int* index = a.key_index + v.query_row * a.keys_per_query;
  const i64 keys = a.keys_per_query;
  // The next pair's key indices, loaded before waiting for its buffers: their latency stays off the gather's path.
  int next_even[kKeyTile / 16], next_odd[kKeyTile / 16];
  load_indices(index, keys, 0, row0, next_even, next_odd);
  const unsigned buffer0 = smem + kBufferOffset, buffer1 = buffer0 + kOperandBytes;
  for (int p = 0; p < pairs; ++p) {
    const TileRows even = tile_rows(a, v, next_even), odd = tile_rows(a, v, next_odd);
    load_indices(index, keys, p + 1, row0, next_even, next_odd);
    const unsigned parity = static_cast<unsigned>(p - 1) & 1;
    if (p > 0) wait_converged(empty_barrier(smem, 0, kLeft), parity);
    copy_half<0, kLeftBlocks>(a, v, buffer0, even, row0, sub, slot, key_valid, full_barrier(smem, 0, kLeft));
    if (p > 0) wait_converged(empty_barrier(smem, 1, kRight), parity);
    copy_half<kLeftBlocks, kDimBlocks>(a, v, buffer1, odd, row0, sub, slot, key_valid + kKeyTile,
                                       full_barrier(smem, 1, kRight));
    if (p > 0) wait_converged(empty_barrier(smem, 0, kRight), parity);
    copy_half<kLeftBlocks, kDimBlocks>(a, v, buffer0, even, row0, sub, slot, nullptr, full_barrier(smem, 0, kRight));
    if (p > 0) wait_converged(empty_barrier(smem, 1, kLeft), parity);
    copy_half<0, kLeftBlocks>(a, v, buffer1, odd, row0, sub, slot, nullptr, full_barrier(smem, 1, kLeft));
  }
}

// ---- consumers ---------------------------------------------------------------------------------------------------

// Issues s (+)= Q · Kᵀ over dim blocks [first, last) of the tile in `buffer` (m64n64k16, 4 K steps per block).
template <int first, int last>
__device__ inline void issue_scores(float (&s)[32], unsigned smem, unsigned buffer, bool accumulate) {
#pragma unroll
  for (int ks = first * 4; ks < last * 4; ++ks) {
    const unsigned offset = static_cast<unsigned>(ks / 4) * kDimBlockBytes + static_cast<unsigned>(ks % 4) * 32;
    hw::wgmma_m64n64k16_bf16(s, hw::smem_descriptor_k_major_sw128(smem + offset),
                             hw::smem_descriptor_k_major_sw128(buffer + offset), accumulate || ks > first * 4);
  }
}

// Computes the scores of `buffer`'s tile of pair `pair` half by half as the halves land (`first` is the half its
// consumer releases first, so the producer refills it first): the first half's MMAs run while the other half is
// still being gathered. Each half has its own accumulators, summed at the end: a wait between MMAs into the same
// accumulators makes the compiler serialize them (ptxas C7520).
template <Half first>
__device__ inline void tile_scores(float (&s)[32], float (&s_other)[32], unsigned smem, int buffer, int pair) {
  const unsigned parity = static_cast<unsigned>(pair) & 1;
  const unsigned tile = smem + kBufferOffset + static_cast<unsigned>(buffer) * kOperandBytes;
  constexpr Half second = first == kLeft ? kRight : kLeft;
  wait_converged(full_barrier(smem, buffer, first), parity);
  hw::fence_proxy_async_shared();  // the producer's cp.async writes (generic proxy) before the tensor cores read
  hw::wgmma_fence();
  if constexpr (first == kLeft) {
    issue_scores<0, kLeftBlocks>(s, smem, tile, false);
  } else {
    issue_scores<kLeftBlocks, kDimBlocks>(s, smem, tile, false);
  }
  hw::wgmma_commit_group();
  wait_converged(full_barrier(smem, buffer, second), parity);
  hw::fence_proxy_async_shared();
  hw::wgmma_fence();
  if constexpr (first == kLeft) {
    issue_scores<kLeftBlocks, kDimBlocks>(s_other, smem, tile, false);
  } else {
    issue_scores<0, kLeftBlocks>(s_other, smem, tile, false);
  }
  hw::wgmma_commit_group();
  hw::wgmma_wait_group<0>();
  hw::wgmma_fence_operands(s);
  hw::wgmma_fence_operands(s_other);
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] += s_other[i];
}

// Issues o += P · V over the tile's 64 keys for value dims [256·half, +256) of `buffer`: 4 K steps of 16 keys, V read
// N-major (64-dim blocks 8 KB apart along n, 16 keys = 2048 bytes per step); P from registers (`p_regs`) or from a
// K-major swizzled 64 × 64 tile in shared memory (`p_tile`).
__device__ inline std::uint64_t value_descriptor(unsigned buffer, int half, int kk) {
  return hw::smem_descriptor_mn_major_sw128(
      buffer + static_cast<unsigned>(half * kLeftBlocks) * kDimBlockBytes + static_cast<unsigned>(kk) * 16 * kRowBytes,
      kDimBlockBytes);
}
__device__ inline void issue_pv_from_registers(float (&o)[128], const unsigned (&p_regs)[16], unsigned buffer,
                                               int half) {
#pragma unroll
  for (int kk = 0; kk < kKeyTile / 16; ++kk) {
    const unsigned a[4] = {p_regs[4 * kk], p_regs[4 * kk + 1], p_regs[4 * kk + 2], p_regs[4 * kk + 3]};
    hw::wgmma_m64n256k16_bf16_rs(o, a, value_descriptor(buffer, half, kk));
  }
}
__device__ inline void issue_pv_from_tile(float (&o)[128], unsigned p_tile, unsigned buffer, int half) {
#pragma unroll
  for (int kk = 0; kk < kKeyTile / 16; ++kk) {
    hw::wgmma_m64n256k16_bf16<hw::WgmmaB::kNMajor>(
        o, hw::smem_descriptor_k_major_sw128(p_tile + static_cast<unsigned>(kk) * 32),
        value_descriptor(buffer, half, kk), true);
  }
}

// One consumer thread's rows and softmax state.
struct RowState {
  int row[2];    // accumulator rows (heads) 16·warp + lane / 4 + 8h
  float max[2];  // the reference maximum (base 2, scaled; next_reference) the thread's O and sum are relative to
  float sum[2];  // this thread's share of the probabilities' sum
};

// Masks the tile's scores (−inf for invalid keys), scales them to base 2 and returns the tile's row maxima.
__device__ inline void mask_and_scale(float (&s)[32], const int* flags, float scale_log2, int lane,
                                      float (&tile_max)[2]) {
  tile_max[0] = tile_max[1] = -INFINITY;
#pragma unroll
  for (int c = 0; c < 8; ++c) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = 8 * c + 2 * (lane % 4) + (e & 1);
      float& x = s[4 * c + e];
      x = flags[key] != 0 ? x * scale_log2 : -INFINITY;
      tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
    tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
  }
}

// Moves the state to the new maxima: O and the sum are scaled by 2^(old − new) (O only where a warp's maximum grew:
// a warp-uniform branch), then s becomes the probabilities 2^(s − new), added to the sum.
__device__ inline void softmax_to(RowState& st, float (&o)[128], float (&s)[32], const float (&new_max)[2]) {
  float corr[2], base[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    base[h] = new_max[h] == -INFINITY ? 0.0f : new_max[h];  // no key seen yet: every p is 0
    corr[h] = exp2f(st.max[h] - base[h]);
    st.max[h] = new_max[h];
    st.sum[h] *= corr[h];
  }
  if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] *= corr[(i / 2) % 2];
  }
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    s[i] = exp2f(s[i] - base[(i / 2) % 2]);
    st.sum[(i / 2) % 2] += s[i];
  }
}

// The probabilities as the A fragments of the 4 K steps of P · V (see hopper_ops.cuh, wgmma_m64n256k16_bf16_rs).
__device__ inline void pack_probabilities(const float (&s)[32], unsigned (&p_regs)[16]) {
#pragma unroll
  for (int i = 0; i < 16; ++i) p_regs[i] = hw::pack_bf16x2(s[2 * i], s[2 * i + 1]);
}

// Writes the probabilities (times `factor` per row) into a 64 × 64 bf16 K-major 128-byte-swizzled tile.
__device__ inline void store_probabilities(const float (&s)[32], const float (&factor)[2], const RowState& st,
                                           unsigned p_tile, int lane) {
#pragma unroll
  for (int c = 0; c < 8; ++c) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int slot = c ^ (st.row[h] & 7);
      hw::st_shared_b32(p_tile + static_cast<unsigned>(st.row[h]) * kRowBytes + static_cast<unsigned>(slot * 16) +
                            static_cast<unsigned>(lane % 4) * 4,
                        hw::pack_bf16x2(s[4 * c + 2 * h] * factor[h], s[4 * c + 2 * h + 1] * factor[h]));
    }
  }
}

// The reference maximum after a tile whose row maximum is `tile_max`: moved only when the tile exceeds it by more
// than kMaxSlackLog2 (no key seen yet: any finite maximum moves it).
__device__ inline float next_reference(float reference, float tile_max) {
  return tile_max > reference + kMaxSlackLog2 ? tile_max : reference;
}

// Both consumers end relative to the same maxima: adds the other's share of each row sum and writes this consumer's
// 256 value dims of the output through shared memory, one 512-byte bulk copy per row. Stored from the accumulator
// layout straight to global memory (4-byte stores, each filling half of a 32-byte sector, the LSU queue full) the end
// of the block held ~10 % of the consumers' stall samples, the tensor cores idle meanwhile; this form is 3.4 % faster
// (ncu and H200 timings, docs/performance.md). The staging tile lies in Q's region: once either consumer gets here,
// every score MMA of both is done (each waited for the other's last P).
__device__ void finish(const AttentionArgs& a, const QueryView& v, unsigned smem, int w, RowState& st,
                       const float (&o)[128]) {
  float* row_sums = reinterpret_cast<float*>(__cvta_shared_to_generic(smem + kSumOffset));
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) % 128 / 32;
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    st.sum[h] += __shfl_xor_sync(0xffffffffu, st.sum[h], 1);
    st.sum[h] += __shfl_xor_sync(0xffffffffu, st.sum[h], 2);
    if (lane % 4 == 0) row_sums[w * kHeads + st.row[h]] = st.sum[h];
  }
  hw::mbarrier_arrive(sums_ready(smem, w));
  wait_converged(sums_ready(smem, 1 - w), 0);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float total = st.sum[h] + row_sums[(1 - w) * kHeads + st.row[h]];
    inv[h] = total > 0.0f ? 1.0f / total : 0.0f;
  }
  const unsigned tile = smem + static_cast<unsigned>(w) * kHeads * kOutRowBytes;
#pragma unroll
  for (int c = 0; c < kHalfDims / 8; ++c) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      hw::st_shared_b32(tile + static_cast<unsigned>(st.row[h]) * kOutRowBytes + static_cast<unsigned>(c * 16) +
                            static_cast<unsigned>(lane % 4) * 4,
                        hw::pack_bf16x2(o[4 * c + 2 * h] * inv[h], o[4 * c + 2 * h + 1] * inv[h]));
    }
  }
  // A warp's 16 rows are written by its own lanes: the warp's barrier orders them before its lanes' copies.
  hw::fence_proxy_async_shared();
  __syncwarp();
  if (lane < 16) {
    const int row = 16 * warp + lane;
    bf16* out = static_cast<bf16*>(a.out) + v.query_row * a.out_row_stride + (v.h0 + row) * kDimV + w * kHalfDims;
    hw::bulk_store(out, tile + static_cast<unsigned>(row) * kOutRowBytes, kHalfDims * 2);
    hw::bulk_commit_group();
    hw::bulk_wait_group_read();  // the block's shared memory must outlive the copy's reads
  }
}

__device__ inline RowState initial_rows() {
  const int thread = static_cast<int>(threadIdx.x) % 128, warp = thread / 32, lane = thread % 32;
  RowState st{};
  st.row[0] = 16 * warp + lane / 4;
  st.row[1] = st.row[0] + 8;
  st.max[0] = st.max[1] = -INFINITY;
  st.sum[0] = st.sum[1] = 0.0f;
  return st;
}

// What both consumers address in shared memory: consumer w's key-valid flags (those of buffer w), the pair maxima,
// the two tile buffers and the two probability tiles (P0 in buffer 0's last dim block, P1 in its own 8 KB).
struct ConsumerShared {
  const int* flags;
  float* maxima;
  unsigned buffer0, buffer1, p0_tile, p1_tile;
};
__device__ inline ConsumerShared consumer_shared(unsigned smem, int w) {
  const unsigned buffer0 = smem + kBufferOffset;
  return {reinterpret_cast<const int*>(__cvta_shared_to_generic(smem + kValidOffset)) + w * kKeyTile,
          reinterpret_cast<float*>(__cvta_shared_to_generic(smem + kMaxOffset)),
          buffer0,
          buffer0 + kOperandBytes,
          buffer0 + kP0InBuffer0,
          smem + kP1Offset};
}

// Consumer 0 (warpgroup 1): the even tiles' scores and softmax, value dims 0–255. It hands P0 to consumer 1 before
// waiting for its own first P · V, and releases buffer 1's left half before it waits for its next tile.
__device__ void consume_even(const AttentionArgs& a, const QueryView& v, unsigned smem, int pairs) {
  const auto [flags, maxima, buffer0, buffer1, p0_tile, p1_tile] = consumer_shared(smem, 0);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const float scale_log2 = a.scale * 1.4426950408889634f;
  RowState st = initial_rows();
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.0f;
  float s[32];
  for (int p = 0; p < pairs; ++p) {
    if (p == 0) {  // here rather than before the loop: there, the compiler spilled
      float s_right[32];
      tile_scores<kLeft>(s, s_right, smem, 0, 0);
    }
    float tile_max[2], mine[2];
    mask_and_scale(s, flags, scale_log2, lane, tile_max);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mine[h] = next_reference(st.max[h], tile_max[h]);
      if (lane % 4 == 0) maxima[st.row[h]] = mine[h];
    }
    hw::mbarrier_arrive(maxima_ready(smem, 0));
    softmax_to(st, o, s, mine);
    unsigned p_regs[16];
    pack_probabilities(s, p_regs);
    hw::wgmma_fence();
    issue_pv_from_registers(o, p_regs, buffer0, 0);
    hw::wgmma_commit_group();

    // The pair's maxima from consumer 1: P0 rescaled to them goes to consumer 1 while this consumer's P · V runs; O
    // and the sum follow once it is done.
    wait_converged(maxima_ready(smem, 1), static_cast<unsigned>(p) & 1);
    float pair_max[2], factor[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      pair_max[h] = maxima[kHeads + st.row[h]];
      factor[h] = st.max[h] == -INFINITY ? 0.0f : exp2f(st.max[h] - pair_max[h]);
    }
    store_probabilities(s, factor, st, p0_tile, lane);
    hw::fence_proxy_async_shared();  // P's ordinary stores before the tensor cores read them
    consumers_arrive(kP0Ready);
    // Buffer 0's right half (its scores' dims, P0 in its last block) is refilled once consumer 1 multiplied P0 and
    // this thread arrives here too: its P0 stores then reach the producer through its own arrival.
    hw::mbarrier_arrive(empty_barrier(smem, 0, kRight));
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(o);
    hw::mbarrier_arrive(empty_barrier(smem, 0, kLeft));  // this thread's flag loads and its MMAs' reads are done
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      st.max[h] = pair_max[h];
      st.sum[h] *= factor[h];
    }
    if (__any_sync(0xffffffffu, factor[0] != 1.0f || factor[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < 128; ++i) o[i] *= factor[(i / 2) % 2];
    }
    consumers_sync(kP1Ready);
    // Buffer 1's left half was awaited by consumer 1 only: its copies reach this warpgroup's MMAs through the
    // barrier, then this proxy fence.
    hw::fence_proxy_async_shared();
    hw::wgmma_fence();
    issue_pv_from_tile(o, p1_tile, buffer1, 0);
    hw::wgmma_commit_group();
    // Buffer 1's left half is released before this consumer waits for its next tile: consumer 1's next tile then
    // lands while buffer 0's does, not after it.
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(o);
    hw::mbarrier_arrive(empty_barrier(smem, 1, kLeft));
    if (p + 1 < pairs) {
      float s_right[32];
      tile_scores<kLeft>(s, s_right, smem, 0, p + 1);
    }
  }
  finish(a, v, smem, 0, st, o);
}

// Consumer 1 (warpgroup 2): the odd tiles' scores and softmax, value dims 256–511.
__device__ void consume_odd(const AttentionArgs& a, const QueryView& v, unsigned smem, int pairs) {
  const auto [flags, maxima, buffer0, buffer1, p0_tile, p1_tile] = consumer_shared(smem, 1);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const float scale_log2 = a.scale * 1.4426950408889634f;
  RowState st = initial_rows();
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) o[i] = 0.0f;

  for (int p = 0; p < pairs; ++p) {
    float s[32], s_left[32];
    tile_scores<kRight>(s, s_left, smem, 1, p);

    float tile_max[2], pair_max[2];
    mask_and_scale(s, flags, scale_log2, lane, tile_max);
    wait_converged(maxima_ready(smem, 0), static_cast<unsigned>(p) & 1);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // consumer 0's reference already includes the running one
      pair_max[h] = next_reference(maxima[st.row[h]], tile_max[h]);
      if (lane % 4 == 0) maxima[kHeads + st.row[h]] = pair_max[h];
    }
    hw::mbarrier_arrive(maxima_ready(smem, 1));
    softmax_to(st, o, s, pair_max);
    unsigned p_regs[16];
    pack_probabilities(s, p_regs);
    hw::wgmma_fence();
    issue_pv_from_registers(o, p_regs, buffer1, 1);
    hw::wgmma_commit_group();
    const float one[2] = {1.0f, 1.0f};
    store_probabilities(s, one, st, p1_tile, lane);
    hw::fence_proxy_async_shared();  // P's ordinary stores before the tensor cores read them
    consumers_arrive(kP1Ready);
    hw::wgmma_wait_group<0>();
    hw::mbarrier_arrive(empty_barrier(smem, 1, kRight));  // this thread's flag loads and its MMAs' reads are done
    consumers_sync(kP0Ready);
    hw::fence_proxy_async_shared();  // buffer 0's right half was awaited by consumer 0 (see consume_even)
    issue_pv_from_tile(o, p0_tile, buffer0, 1);
    hw::wgmma_commit_group();
    hw::wgmma_wait_group<0>();
    hw::wgmma_fence_operands(o);
    hw::mbarrier_arrive(empty_barrier(smem, 0, kRight));
  }
  finish(a, v, smem, 1, st, o);
}

__global__ void __launch_bounds__(kThreads, 1) sparse_mla_wgmma_kernel(AttentionArgs a) {
  extern __shared__ __align__(1024) unsigned char mla_smem[];
  // The 128-byte swizzle pattern repeats every 1024 bytes: operands must start on such a boundary.
  const unsigned smem = (hw::smem_address(mla_smem) + 1023u) & ~1023u;

  const i64 head_blocks = a.heads / kHeads;
  QueryView v{};
  v.query_row = blockIdx.x / head_blocks;
  v.h0 = (blockIdx.x % head_blocks) * kHeads;
  const i64 b = v.query_row / a.q_tokens, qi = v.query_row % a.q_tokens;
  v.position = a.q_start + qi * a.q_stride;
  v.kv_base = static_cast<const bf16*>(a.k) + b * a.kv_batch_rows * a.k_row_stride;
  const int tiles = static_cast<int>((a.keys_per_query + kKeyTile - 1) / kKeyTile);
  const int pairs = (tiles + 1) / 2;  // an odd count leaves the last pair's odd tile all invalid keys

  if (threadIdx.x == 0) {
    for (int buffer = 0; buffer < 2; ++buffer) {
      for (unsigned h = 0; h < 2; ++h) {
        const Half half = h == 0 ? kLeft : kRight;
        hw::mbarrier_init(full_barrier(smem, buffer, half), 2 * 128);  // per producer thread: copies landed + flags
        // Every thread of the half's last reader; buffer 0's right half also every thread of consumer 0 (P0's writer).
        hw::mbarrier_init(empty_barrier(smem, buffer, half), buffer == 0 && half == kRight ? 256 : 128);
      }
    }
    for (int consumer = 0; consumer < 2; ++consumer) {
      hw::mbarrier_init(maxima_ready(smem, consumer), 128);
      hw::mbarrier_init(sums_ready(smem, consumer), 128);
    }
    hw::fence_mbarrier_init();
  }
  __syncthreads();

  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
  if (warpgroup == 0) {
    hw::warpgroup_release_registers<kProducerRegs>();
    produce(a, v, smem, pairs);
  } else {
    hw::warpgroup_claim_registers<kConsumerRegs>();
    if (warpgroup == 1) {
      consume_even(a, v, smem, pairs);
    } else {
      consume_odd(a, v, smem, pairs);
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
