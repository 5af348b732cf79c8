// DeepSeek-V3.2's sparse attention (DSA) indexer kernels: the indexer's scores on the tensor cores (mma.sync; the
// Hopper wgmma kernel is indexer_wgmma.cu, tried first) and their reference kernels (bf16, and fp8 behind the Hopper
// fp8 kernel of indexer_fp8_wgmma.cu). Declared in kernels.hpp (launch_indexer_score, launch_indexer_score_fp8) with
// the other backend kernels; indexer_score.hpp picks among the indexer's kernels. The top-k that selects from the
// scores is dsa_topk.cu.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/tensor_core_ops.cuh"

namespace paratwin::cuda {
namespace {

using bf16 = __nv_bfloat16;
using fp8 = __nv_fp8_e4m3;
using i64 = std::int64_t;
using tc::cp_async_16, tc::cp_async_commit, tc::cp_async_wait, tc::ldmatrix_x4, tc::mma_bf16;

// ---------------------------------------------------------------------------------------------------------------
// Indexer scores, tensor-core path. One block computes the scores of kIdxQueries queries against every visible key:
// its (query, head) rows of q stay in shared memory, 128-key tiles of k stream through two cp.async stages, and each
// warp multiplies the 64 head rows of one query by 32 keys with mma.sync m16n8k16 (bf16 in, fp32 accumulate). The
// relu, the per-head weight and the sum over heads happen in registers and warp shuffles, so the [q·heads × keys]
// product never reaches HBM. Key tiles past the block's last visible position are not computed, only masked.

constexpr int kIdxHeads = 64;                  // DeepSeek-V3.2's indexer heads: one warp's rows = one query's heads
constexpr int kIdxDim = 128;                   // indexer head dimension = the mma K extent, whole in shared memory
constexpr int kIdxQueries = 2;                 // queries per block
constexpr int kIdxKeyTile = 128;               // keys per pipeline stage
constexpr int kIdxWarpKeys = kIdxKeyTile / 4;  // keys per warp: 4 warps per query
constexpr int kIdxThreads = 32 * kIdxQueries * 4;
constexpr int kChunksPerRow = kIdxDim * 2 / 16;  // 16-byte chunks in one 256-byte row
constexpr int kIdxQBytes = kIdxQueries * kIdxHeads * kIdxDim * 2;
constexpr int kIdxKTileBytes = kIdxKeyTile * kIdxDim * 2;
constexpr int kIdxSmemBytes = kIdxQBytes + 2 * kIdxKTileBytes;

// Rows of 256 bytes with the 16-byte chunk index XOR-ed by the row's low 3 bits: the 8 rows one ldmatrix phase reads
// land in 8 different bank groups.
__device__ inline unsigned swizzled_offset(int row, int chunk) {
  return static_cast<unsigned>(row * (kIdxDim * 2) + ((chunk ^ (row & 7)) * 16));
}

// Copies `rows` rows of 256 bytes (rows ≥ `valid_rows` zero-filled) into swizzled shared memory.
__device__ inline void stage_rows(unsigned smem_base, const bf16* src, int rows, i64 valid_rows) {
  for (int c = static_cast<int>(threadIdx.x); c < rows * kChunksPerRow; c += kIdxThreads) {
    const int row = c / kChunksPerRow, chunk = c % kChunksPerRow;
    const bool valid = row < valid_rows;
    const bf16* g = src + (valid ? static_cast<i64>(row) * kIdxDim + chunk * 8 : 0);
    cp_async_16(smem_base + swizzled_offset(row, chunk), g, valid);
  }
}

__global__ void __launch_bounds__(kIdxThreads, 2)
    indexer_score_mma_kernel(const bf16* q, const bf16* k, const bf16* w, float* out, i64 queries, i64 keys,
                             i64 q_start, i64 q_stride, bool causal, bool pair_stores) {
  extern __shared__ __align__(128) unsigned char idx_smem[];
  const unsigned q_smem = static_cast<unsigned>(__cvta_generic_to_shared(idx_smem));
  const unsigned k_smem = q_smem + kIdxQBytes;

  // The last blocks hold the latest queries, which see the most keys under causality: start them first.
  const i64 q0 = static_cast<i64>(gridDim.x - 1 - blockIdx.x) * kIdxQueries;
  const i64 block_queries = queries - q0 < kIdxQueries ? queries - q0 : kIdxQueries;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int wq = warp / 4;                   // the warp's query within the block
  const int wk = (warp % 4) * kIdxWarpKeys;  // the warp's first key within a tile
  const i64 qi = q0 + wq;
  const bool query_valid = wq < block_queries;

  // Keys this block must compute: up to the largest visible position of its queries.
  i64 visible_keys = keys;
  if (causal) {
    const i64 first = q_start + q0 * q_stride, last = q_start + (q0 + block_queries - 1) * q_stride;
    const i64 max_pos = first > last ? first : last;
    visible_keys = max_pos + 1 < keys ? max_pos + 1 : keys;
    if (visible_keys < 0) visible_keys = 0;
  }
  const i64 my_pos = q_start + qi * q_stride;
  const i64 tiles = (visible_keys + kIdxKeyTile - 1) / kIdxKeyTile;

  stage_rows(q_smem, q + q0 * kIdxHeads * kIdxDim, kIdxQueries * kIdxHeads, block_queries * kIdxHeads);
  if (tiles > 0) stage_rows(k_smem, k, kIdxKeyTile, visible_keys);
  cp_async_commit();

  // Each thread's heads in the C fragments: h = 16·mt + lane/4 (c0, c1) and h + 8 (c2, c3).
  float head_w[4][2];
  for (int mt = 0; mt < 4; ++mt) {
    for (int half = 0; half < 2; ++half) {
      const int h = mt * 16 + lane / 4 + half * 8;
      head_w[mt][half] = query_valid ? __bfloat162float(w[qi * kIdxHeads + h]) : 0.0f;
    }
  }
  float* out_row = out + qi * keys;

  for (i64 t = 0; t < tiles; ++t) {
    const i64 key0 = t * kIdxKeyTile;
    if (t + 1 < tiles) {
      const i64 next0 = key0 + kIdxKeyTile;
      stage_rows(k_smem + static_cast<unsigned>(((t + 1) & 1) * kIdxKTileBytes), k + next0 * kIdxDim, kIdxKeyTile,
                 visible_keys - next0);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    const unsigned kt = k_smem + static_cast<unsigned>((t & 1) * kIdxKTileBytes);
    float acc[4][4][4] = {};  // [m-tile of 16 heads][n-tile of 8 keys][fragment]
#pragma unroll
    for (int ks = 0; ks < kIdxDim / 16; ++ks) {
      unsigned a[4][4];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const int row = wq * kIdxHeads + mt * 16 + lane % 16;
        ldmatrix_x4(q_smem + swizzled_offset(row, ks * 2 + lane / 16), a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
      }
#pragma unroll
      for (int np = 0; np < 2; ++np) {  // pairs of n-tiles: 16 keys per ldmatrix.x4
        const int row = wk + np * 16 + (lane / 16) * 8 + lane % 8;
        unsigned b0, b1, b2, b3;
        ldmatrix_x4(kt + swizzled_offset(row, ks * 2 + (lane / 8) % 2), b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          mma_bf16(acc[mt][np * 2], a[mt], b0, b1);
          mma_bf16(acc[mt][np * 2 + 1], a[mt], b2, b3);
        }
      }
    }
    __syncthreads();  // the stage just read is refilled by the next iteration's copy

    // relu · weight, summed over this thread's 8 heads, then over the 8 lanes that share a key column.
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        s0 += head_w[mt][0] * fmaxf(acc[mt][nt][0], 0.0f) + head_w[mt][1] * fmaxf(acc[mt][nt][2], 0.0f);
        s1 += head_w[mt][0] * fmaxf(acc[mt][nt][1], 0.0f) + head_w[mt][1] * fmaxf(acc[mt][nt][3], 0.0f);
      }
#pragma unroll
      for (int offset = 4; offset < 32; offset *= 2) {
        s0 += __shfl_xor_sync(0xffffffffu, s0, offset);
        s1 += __shfl_xor_sync(0xffffffffu, s1, offset);
      }
      const i64 j = key0 + wk + nt * 8 + 2 * lane;
      if (lane < 4 && query_valid && j < keys) {
        const float v0 = causal && j > my_pos ? -FLT_MAX : s0;
        const float v1 = causal && j + 1 > my_pos ? -FLT_MAX : s1;
        if (pair_stores && j + 1 < keys) {
          *reinterpret_cast<float2*>(out_row + j) = make_float2(v0, v1);
        } else {
          out_row[j] = v0;
          if (j + 1 < keys) out_row[j + 1] = v1;
        }
      }
    }
  }

  cp_async_wait<0>();  // nothing may stay in flight at exit (no tile: the q rows' group is still pending)

  // Keys past every visible position of the block: masked without computing.
  const i64 masked0 = tiles * kIdxKeyTile;
  for (int r = 0; r < block_queries; ++r) {
    float* row = out + (q0 + r) * keys;
    for (i64 j = masked0 + threadIdx.x; j < keys; j += kIdxThreads) row[j] = -FLT_MAX;
  }
}

__device__ inline float to_float(bf16 x) {
  return __bfloat162float(x);
}
__device__ inline float to_float(fp8 x) {
  return static_cast<float>(x);
}
__device__ inline float to_float(float x) {
  return x;
}

// Any head count and dimension, unaligned operands, any GPU: one thread per (query, key), fp32 dot products. Two
// instances: bf16 q, k and head weights (launch_indexer_score), and e4m3 q and k (their products are exact in fp32)
// with fp32 head weights and each key's scale applied to the sum over heads (launch_indexer_score_fp8; k_scale is
// null for bf16).
template <typename Operand, typename Weight>
__global__ void indexer_score_reference_kernel(const Operand* q, const Operand* k, const float* k_scale,
                                               const Weight* w, float* out, i64 queries, i64 keys, i64 heads, i64 dim,
                                               i64 q_start, i64 q_stride, bool causal) {
  const i64 total = queries * keys;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 qi = i / keys, j = i % keys;
    if (causal && j > q_start + qi * q_stride) {
      out[i] = -FLT_MAX;
      continue;
    }
    float s = 0.0f;
    for (i64 h = 0; h < heads; ++h) {
      float dot = 0.0f;
      const Operand* qh = q + (qi * heads + h) * dim;
      for (i64 d = 0; d < dim; ++d) dot += to_float(qh[d]) * to_float(k[j * dim + d]);
      s += to_float(w[qi * heads + h]) * fmaxf(dot, 0.0f);
    }
    out[i] = k_scale != nullptr ? k_scale[j] * s : s;
  }
}

template <typename Operand, typename Weight>
void launch_indexer_score_reference(const Operand* q, const Operand* k, const float* k_scale, const Weight* w,
                                    float* out, i64 queries, i64 keys, i64 heads, i64 dim, i64 q_start, i64 q_stride,
                                    bool causal, cudaStream_t stream) {
  if (queries * keys == 0) return;
  constexpr int kBlock = 256;
  const i64 blocks = (queries * keys + kBlock - 1) / kBlock;
  indexer_score_reference_kernel<<<static_cast<unsigned>(blocks < 2147483647 ? blocks : 2147483647), kBlock, 0,
                                   stream>>>(q, k, k_scale, w, out, queries, keys, heads, dim, q_start, q_stride,
                                             causal);
}

}  // namespace

namespace {

bool aligned(const void* p, std::uintptr_t bytes) {
  return (reinterpret_cast<std::uintptr_t>(p) & (bytes - 1)) == 0;
}

bool indexer_mma_sync_takes(const void* q, const void* k, i64 heads, i64 dim) {
  return heads == kIdxHeads && dim == kIdxDim && aligned(q, 16) && aligned(k, 16);
}

}  // namespace

const char* to_string(IndexerKernel kernel) {
  switch (kernel) {
    case IndexerKernel::kWgmma:
      return "wgmma";
    case IndexerKernel::kMmaSync:
      return "mma.sync";
    case IndexerKernel::kReference:
      return "reference";
  }
  return "?";
}

IndexerKernel indexer_kernel_for(const void* q, const void* k, i64 queries, i64 keys, i64 heads, i64 dim) {
  if (indexer_wgmma_takes(q, k, queries, keys, heads, dim)) return IndexerKernel::kWgmma;
  if (indexer_mma_sync_takes(q, k, heads, dim)) return IndexerKernel::kMmaSync;
  return IndexerKernel::kReference;
}

bool launch_indexer_score_on(IndexerKernel kernel, const void* q, const void* k, const void* w, float* out, i64 queries,
                             i64 keys, i64 heads, i64 dim, i64 q_start, i64 q_stride, bool causal,
                             cudaStream_t stream) {
  if (queries * keys == 0) return true;
  const auto* qb = static_cast<const bf16*>(q);
  const auto* kb = static_cast<const bf16*>(k);
  const auto* wb = static_cast<const bf16*>(w);
  switch (kernel) {
    case IndexerKernel::kWgmma:
      return indexer_wgmma_takes(q, k, queries, keys, heads, dim) &&
             launch_indexer_score_wgmma(q, k, w, out, queries, keys, q_start, q_stride, causal, stream);
    case IndexerKernel::kMmaSync: {
      if (!indexer_mma_sync_takes(q, k, heads, dim)) return false;
      // Per device (the engine may drive several from one process) and cheap: set on every launch.
      (void)cudaFuncSetAttribute(indexer_score_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kIdxSmemBytes);
      const i64 blocks = (queries + kIdxQueries - 1) / kIdxQueries;
      const bool pair_stores = keys % 2 == 0 && aligned(out, 8);
      indexer_score_mma_kernel<<<static_cast<unsigned>(blocks), kIdxThreads, kIdxSmemBytes, stream>>>(
          qb, kb, wb, out, queries, keys, q_start, q_stride, causal, pair_stores);
      return true;
    }
    case IndexerKernel::kReference:
      launch_indexer_score_reference(qb, kb, nullptr, wb, out, queries, keys, heads, dim, q_start, q_stride, causal,
                                     stream);
      return true;
  }
  return false;
}

void launch_indexer_score(const void* q, const void* k, const void* w, float* out, i64 queries, i64 keys, i64 heads,
                          i64 dim, i64 q_start, i64 q_stride, bool causal, cudaStream_t stream) {
  // The first kernel that takes the arguments; the wgmma kernel may still decline at launch (tensor maps refused).
  for (const auto kernel : {IndexerKernel::kWgmma, IndexerKernel::kMmaSync, IndexerKernel::kReference}) {
    if (launch_indexer_score_on(kernel, q, k, w, out, queries, keys, heads, dim, q_start, q_stride, causal, stream)) {
      return;
    }
  }
}

IndexerKernel indexer_fp8_kernel_for(const void* q, const void* k, i64 queries, i64 keys, i64 heads, i64 dim) {
  return indexer_fp8_wgmma_takes(q, k, queries, keys, heads, dim) ? IndexerKernel::kWgmma : IndexerKernel::kReference;
}

bool launch_indexer_score_fp8_on(IndexerKernel kernel, const void* q, const void* k, const float* k_scale,
                                 const float* w, float* out, i64 queries, i64 keys, i64 heads, i64 dim, i64 q_start,
                                 i64 q_stride, bool causal, cudaStream_t stream) {
  switch (kernel) {
    case IndexerKernel::kWgmma:
      if (!indexer_fp8_wgmma_takes(q, k, queries, keys, heads, dim)) return false;
      return launch_indexer_score_fp8_wgmma(q, k, k_scale, w, out, queries, keys, q_start, q_stride, causal, stream);
    case IndexerKernel::kMmaSync:
      return false;
    case IndexerKernel::kReference:
      launch_indexer_score_reference(static_cast<const fp8*>(q), static_cast<const fp8*>(k), k_scale, w, out, queries,
                                     keys, heads, dim, q_start, q_stride, causal, stream);
      return true;
  }
  return false;
}

void launch_indexer_score_fp8(const void* q, const void* k, const float* k_scale, const float* w, float* out,
                              i64 queries, i64 keys, i64 heads, i64 dim, i64 q_start, i64 q_stride, bool causal,
                              cudaStream_t stream) {
  if (queries * keys == 0) return;
  // The wgmma kernel may still decline at launch (tensor maps refused): the reference kernel then.
  if (launch_indexer_score_fp8_on(IndexerKernel::kWgmma, q, k, k_scale, w, out, queries, keys, heads, dim, q_start,
                                  q_stride, causal, stream)) {
    return;
  }
  (void)launch_indexer_score_fp8_on(IndexerKernel::kReference, q, k, k_scale, w, out, queries, keys, heads, dim,
                                    q_start, q_stride, causal, stream);
}

}  // namespace paratwin::cuda
