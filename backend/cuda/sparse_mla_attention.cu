// Index-sparse MLA attention on mma.sync (sparse_mla_attention.hpp; the fallback of the wgmma kernel in
// sparse_mla_wgmma.cu, and the dispatch between the two at the end of this file). One block = one query's 64 heads; its
// 8 warps split them into 4 groups of 16 heads × 2 halves of the 512 value dims. The two warps of a head group (a
// "pair") each compute half of the group's 16 × 32 score tile (16 keys), exchange their row maxima and their P
// fragments (bf16, already in the A-operand layout of P·V) through shared memory under a pair barrier, and keep the
// softmax state in registers.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/sparse_mla_attention.hpp"
#include "backend/cuda/tensor_core_ops.cuh"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using i64 = std::int64_t;
using tc::cp_async_16, tc::cp_async_commit, tc::cp_async_wait, tc::ldmatrix_x4, tc::ldmatrix_x4_trans, tc::mma_bf16,
    tc::pack_bf16;

constexpr int kDimQk = 576, kDimV = 512;
constexpr int kHeadsPerBlock = 64;
constexpr int kKeyTile = 32;
constexpr int kThreads = 256;
constexpr int kRowChunks = kDimQk * 2 / 16;  // 72 chunks of 16 bytes per 1152-byte row
constexpr int kQBytes = kHeadsPerBlock * kDimQk * 2;
constexpr int kTileBytes = kKeyTile * kDimQk * 2;
constexpr int kSmemBytes = kQBytes + 2 * kTileBytes;

// 1152-byte rows (a multiple of 128): the chunk index XOR-ed by the row's low 3 bits spreads the 8 rows of one
// ldmatrix phase over the 8 bank groups.
__device__ inline unsigned swizzled(int row, int chunk) {
  return static_cast<unsigned>(row * (kDimQk * 2) + ((chunk ^ (row & 7)) * 16));
}

// Synchronizes the two warps of head group `group` (named barriers 1–4; 0 is __syncthreads).
__device__ inline void pair_barrier(int group) {
  asm volatile("bar.sync %0, 64;\n" ::"r"(group + 1) : "memory");
}

__global__ void __launch_bounds__(kThreads, 1) sparse_mla_attention_kernel(AttentionArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int key_valid[2][kKeyTile];
  __shared__ float pair_max[4][2][16];      // [head group][warp of the pair][row]
  __shared__ unsigned pair_p[4][2][4][32];  // [head group][warp of the pair][A register][lane]
  __shared__ float pair_sum[4][2][16];
  const unsigned q_smem = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const unsigned kv_smem = q_smem + kQBytes;

  const i64 head_blocks = a.heads / kHeadsPerBlock;
  const i64 h0 = (blockIdx.x % head_blocks) * kHeadsPerBlock;
  const i64 query_row = blockIdx.x / head_blocks;  // b·q_tokens + qi
  const i64 b = query_row / a.q_tokens, qi = query_row % a.q_tokens;
  const i64 qpos = a.q_start + qi * a.q_stride;
  const int* index = a.key_index + query_row * a.keys_per_query;
  const bf16* kbase = static_cast<const bf16*>(a.k) + b * a.kv_batch_rows * a.k_row_stride;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int group = warp % 4;   // heads h0 + 16·group …
  const int v_half = warp / 4;  // value dims 256·v_half …

  // q rows of the block's heads.
  const bf16* qbase = static_cast<const bf16*>(a.q) + query_row * a.q_row_stride + h0 * kDimQk;
  for (int c = static_cast<int>(threadIdx.x); c < kHeadsPerBlock * kRowChunks; c += kThreads) {
    const int row = c / kRowChunks, chunk = c % kRowChunks;
    cp_async_16(q_smem + swizzled(row, chunk), qbase + row * kDimQk + chunk * 8, true);
  }
  // Gathers tile t's rows into stage t & 1; keys not selected (−1), out of range or after the query are zero rows,
  // flagged invalid.
  const auto gather = [&](i64 t) {
    const int stage = static_cast<int>(t & 1);
    for (int c = static_cast<int>(threadIdx.x); c < kKeyTile * kRowChunks; c += kThreads) {
      const int row = c / kRowChunks, chunk = c % kRowChunks;
      const i64 slot = t * kKeyTile + row;
      const i64 j = slot < a.keys_per_query ? index[slot] : -1;
      bool valid = j >= 0 && j < a.kv_tokens;
      if (valid && a.causal) valid = a.kv_start + j * a.kv_stride <= qpos;
      if (chunk == 0) key_valid[stage][row] = valid ? 1 : 0;
      const bf16* src = valid ? kbase + j * a.k_row_stride + chunk * 8 : kbase;
      cp_async_16(kv_smem + static_cast<unsigned>(stage * kTileBytes) + swizzled(row, chunk), src, valid);
    }
  };
  const i64 tiles = (a.keys_per_query + kKeyTile - 1) / kKeyTile;
  gather(0);
  cp_async_commit();

  const float scale_log2 = a.scale * 1.4426950408889634f;
  float o[32][4] = {};  // [n-tile of 8 value dims][fragment]: rows lane/4 (0, 1) and lane/4 + 8 (2, 3)
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

  for (i64 t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) {
      gather(t + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int stage = static_cast<int>(t & 1);
    const unsigned kt = kv_smem + static_cast<unsigned>(stage * kTileBytes);

    // This warp's half of S = q · kᵀ: 16 heads × keys 16·v_half … (one ldmatrix.x4 = two n-tiles of 8 keys).
    float s[2][4] = {};
#pragma unroll 4
    for (int ks = 0; ks < kDimQk / 16; ++ks) {
      unsigned qa[4];
      ldmatrix_x4(q_smem + swizzled(group * 16 + lane % 16, ks * 2 + lane / 16), qa[0], qa[1], qa[2], qa[3]);
      unsigned b0, b1, b2, b3;
      ldmatrix_x4(kt + swizzled(v_half * 16 + (lane / 16) * 8 + lane % 8, ks * 2 + (lane / 8) % 2), b0, b1, b2, b3);
      mma_bf16(s[0], qa, b0, b1);
      mma_bf16(s[1], qa, b2, b3);
    }

    // Online softmax in base 2; this thread's keys are 16·v_half + 8·nt + 2·(lane % 4) + {0, 1}, its rows lane / 4
    // (fragments 0, 1) and lane / 4 + 8 (2, 3).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = v_half * 16 + nt * 8 + 2 * (lane % 4) + (e & 1);
        s[nt][e] = key_valid[stage][key] != 0 ? s[nt][e] * scale_log2 : -INFINITY;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], s[nt][e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      if (lane % 4 == 0) pair_max[group][v_half][lane / 4 + 8 * r] = tile_max[r];
    }
    pair_barrier(group);
    float corr[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], pair_max[group][1 - v_half][lane / 4 + 8 * r]);
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      base[r] = new_max == -INFINITY ? 0.0f : new_max;  // no key seen yet: every p is 0
      corr[r] = exp2f(row_max[r] - base[r]);
      row_max[r] = new_max;
      row_sum[r] *= corr[r];
    }
    unsigned p[2][4];  // A operands of P·V: keys 16·kk …, this warp's at kk = v_half, the partner's at 1 − v_half
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const float p0 = exp2f(s[nt][0] - base[0]), p1 = exp2f(s[nt][1] - base[0]);
      const float p2 = exp2f(s[nt][2] - base[1]), p3 = exp2f(s[nt][3] - base[1]);
      row_sum[0] += p0 + p1;
      row_sum[1] += p2 + p3;
      pair_p[group][v_half][nt * 2][lane] = pack_bf16(p0, p1);
      pair_p[group][v_half][nt * 2 + 1][lane] = pack_bf16(p2, p3);
    }
    pair_barrier(group);
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i) p[kk][i] = pair_p[group][kk][i][lane];
    }
#pragma unroll
    for (int nt = 0; nt < 32; ++nt) {
      o[nt][0] *= corr[0];
      o[nt][1] *= corr[0];
      o[nt][2] *= corr[1];
      o[nt][3] *= corr[1];
    }

    // O += P · V over this warp's 256 value dims (the first 512 dims of the gathered rows).
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
#pragma unroll
      for (int np = 0; np < 16; ++np) {
        const int dim_chunk = (v_half * 256 + np * 16) / 8 + lane / 16;
        unsigned b0, b1, b2, b3;
        ldmatrix_x4_trans(kt + swizzled(kk * 16 + lane % 16, dim_chunk), b0, b1, b2, b3);
        mma_bf16(o[np * 2], p[kk], b0, b1);
        mma_bf16(o[np * 2 + 1], p[kk], b2, b3);
      }
    }
    __syncthreads();  // the stage just read is refilled by the next iteration's gather
  }

  // Each warp summed the probabilities of its own keys: add the partner's.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
    if (lane % 4 == 0) pair_sum[group][v_half][lane / 4 + 8 * r] = row_sum[r];
  }
  pair_barrier(group);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float total = row_sum[r] + pair_sum[group][1 - v_half][lane / 4 + 8 * r];
    inv[r] = total > 0.0f ? 1.0f / total : 0.0f;
  }
  bf16* out = static_cast<bf16*>(a.out) + query_row * a.out_row_stride + (h0 + group * 16) * kDimV;
#pragma unroll
  for (int nt = 0; nt < 32; ++nt) {
    const int col = v_half * 256 + nt * 8 + 2 * (lane % 4);
    const int r0 = lane / 4;
    *reinterpret_cast<__nv_bfloat162*>(out + r0 * kDimV + col) =
        __floats2bfloat162_rn(o[nt][0] * inv[0], o[nt][1] * inv[0]);
    *reinterpret_cast<__nv_bfloat162*>(out + (r0 + 8) * kDimV + col) =
        __floats2bfloat162_rn(o[nt][2] * inv[1], o[nt][3] * inv[1]);
  }
}

}  // namespace

bool sparse_mla_attention_takes(const AttentionArgs& a) {
  const auto aligned = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  return a.key_index != nullptr && a.keys_per_query > 0 && a.kv_heads == 1 && a.head_dim_qk == kDimQk &&
         a.head_dim_v == kDimV && a.heads % kHeadsPerBlock == 0 && a.heads > 0 && a.v == a.k &&
         a.v_row_stride == a.k_row_stride && a.out_f32 == nullptr && a.lse == nullptr && aligned(a.q) && aligned(a.k) &&
         aligned(a.out) && a.q_row_stride % 8 == 0 && a.k_row_stride % 8 == 0 && a.out_row_stride % 8 == 0;
}

const char* to_string(SparseMlaKernel kernel) {
  switch (kernel) {
    case SparseMlaKernel::kWgmma:
      return "wgmma";
    case SparseMlaKernel::kMmaSync:
      return "mma.sync";
  }
  return "?";
}

SparseMlaKernel sparse_mla_kernel_for(const AttentionArgs& a) {
  return sparse_mla_wgmma_takes(a) ? SparseMlaKernel::kWgmma : SparseMlaKernel::kMmaSync;
}

bool launch_sparse_mla_attention_on(SparseMlaKernel kernel, const AttentionArgs& a, cudaStream_t stream) {
  if (kernel == SparseMlaKernel::kWgmma) {
    if (!sparse_mla_wgmma_takes(a)) return false;
    launch_sparse_mla_wgmma(a, stream);
    return true;
  }
  if (!sparse_mla_attention_takes(a)) return false;
  const i64 blocks = a.batch * a.q_tokens * (a.heads / kHeadsPerBlock);
  if (blocks == 0) return true;
  // Per device (the engine may drive several from one process) and cheap: set on every launch.
  (void)cudaFuncSetAttribute(sparse_mla_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  sparse_mla_attention_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(a);
  return true;
}

void launch_sparse_mla_attention(const AttentionArgs& a, cudaStream_t stream) {
  (void)launch_sparse_mla_attention_on(sparse_mla_kernel_for(a), a, stream);
}

}  // namespace paratwin::cuda
