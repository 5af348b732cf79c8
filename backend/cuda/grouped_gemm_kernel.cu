#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/grouped_gemm_kernel.hpp"
#include "backend/cuda/hopper_gemm_primitives.cuh"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"

namespace paratwin::cuda {

namespace {

using cuda_plan::kGroupedTileCols;
using cuda_plan::kGroupedTileDepth;
using cuda_plan::kGroupedTileRows;

constexpr int kStages = 4;  // 4 × 48 KB in flight per block: enough to cover memory latency at one block per SM
constexpr int kWarpgroupThreads = 128;
constexpr int kConsumers = 2;  // warpgroups, 64 rows each
constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
constexpr int kRowBytes = kGroupedTileDepth * 2;               // one k stage of one row: 128 bytes, one swizzle row
constexpr int kABytes = kGroupedTileRows * kRowBytes;          // X tile: 128 rows × 64 k, K-major
constexpr int kBBlockBytes = kGroupedTileDepth * 64 * 2;       // W: 64 k-rows × 64 columns, N-major, 8 KB
constexpr int kBBytes = kGroupedTileCols / 64 * kBBlockBytes;  // W tile: 4 such blocks side by side along n
constexpr int kStageBytes = kABytes + kBBytes;
constexpr int kSmemBytes = kStages * kStageBytes + 2 * kStages * 8 + 1024;  // + barriers + alignment slack
constexpr int kProducerRegisters = 56;  // 128·56 + 256·224 = 64,512 = 384 threads × the 168 they start with
constexpr int kConsumerRegisters = 224;
static_assert(kGroupedTileDepth == 64, "one k stage is one 128-byte swizzle row of bf16");
static_assert(kGroupedTileCols == 256 && kGroupedTileRows == kConsumers * 64, "wgmma m64n256 per consumer");

// The producer warpgroup: for every tile of this block, for every k stage, waits until the consumers have released
// the ring slot, then copies X rows (zero past the group's rows) and the W block into it, 128-byte swizzled, and
// counts its copies on the slot's `full` barrier. Its registers are few (kProducerRegisters): the copy loops step
// pointers and shared-memory offsets instead of keeping 24 addresses live.
__device__ void produce(const GroupedKernelArgs& a, std::uint32_t ring, std::uint32_t full, std::uint32_t empty) {
  const int t = static_cast<int>(threadIdx.x);  // 0..127 in the producer warpgroup
  const int k_stages = a.k / kGroupedTileDepth;
  // X: 128 rows × 8 chunks of 16 bytes; 8 consecutive threads read one row's 128 bytes. Copy j of thread t: row
  // t/8 + 16j, chunk t%8; the row's place in its swizzle atom, (t/8) % 8, is the same for every j.
  const int a_row = t / 8, a_chunk = t % 8;
  const auto a_offset = static_cast<std::uint32_t>(a_row * kRowBytes + ((a_chunk ^ (a_row % 8)) * 16));
  constexpr int kACopies = kABytes / 16 / kWarpgroupThreads, kARowStep = kWarpgroupThreads / 8;
  // W: 64 k-rows × 32 chunks; 32 consecutive threads read one k-row's 512 bytes. Copy j of thread t: k-row
  // t/32 + 4j, chunk c = t%32 of 8 columns, which lands in 64-column block c/8 at 16-byte slot c%8 of its k-row.
  const int b_row = t / 32, b_chunk = t % 32;
  constexpr int kBCopies = kBBytes / 16 / kWarpgroupThreads, kBRowStep = kWarpgroupThreads / 32;
  int slot = 0;
  std::uint32_t phase = 0;
  for (int tile = static_cast<int>(blockIdx.x); tile < a.tiles; tile += static_cast<int>(gridDim.x)) {
    const auto at = cuda_plan::decode_grouped_tile(a.schedule, a.groups, tile);
    const int row0 = at.row_block * kGroupedTileRows;
    const int rows = min(a.schedule[2 * at.group] - row0, kGroupedTileRows);
    const auto* x =
        static_cast<const __nv_bfloat16*>(a.table[a.groups + at.group]) + std::int64_t{row0} * a.k + a_chunk * 8;
    const auto* w = static_cast<const __nv_bfloat16*>(a.table[at.group]) + std::int64_t{b_row} * a.n +
                    at.col_block * kGroupedTileCols + b_chunk * 8;
    for (int ks = 0; ks < k_stages; ++ks) {
      hopper::mbarrier_wait(empty + 8 * slot, phase ^ 1);
      const std::uint32_t sa = ring + static_cast<std::uint32_t>(slot * kStageBytes);
      const std::uint32_t sb = sa + kABytes;
      const auto* xs = x + ks * kGroupedTileDepth;
#pragma unroll 4
      for (int j = 0; j < kACopies; ++j) {
        const int r = a_row + j * kARowStep;
        const bool valid = r < rows;  // rows past the group: zeros (never stored), read from a valid address
        hopper::cp_async_16(sa + a_offset + static_cast<std::uint32_t>(j * kARowStep * kRowBytes),
                            xs + std::int64_t{valid ? r : 0} * a.k, valid);
      }
      const auto* ws = w + std::int64_t{ks} * kGroupedTileDepth * a.n;
#pragma unroll 4
      for (int j = 0; j < kBCopies; ++j) {
        const int r = b_row + j * kBRowStep;
        const auto offset =
            static_cast<std::uint32_t>((b_chunk / 8) * kBBlockBytes + r * kRowBytes + (((b_chunk % 8) ^ (r % 8)) * 16));
        hopper::cp_async_16(sb + offset, ws + std::int64_t{j * kBRowStep} * a.n, true);
      }
      hopper::cp_async_arrive_on(full + 8 * slot);
      if (++slot == kStages) {
        slot = 0;
        phase ^= 1;
      }
    }
  }
  hopper::cp_async_wait_all();
}

// A consumer warpgroup: rows 64·`half` .. +63 of each tile. Per k stage: waits for the slot, issues 4 wgmma k16 steps
// as one group, waits for the previous group and releases its slot (one wgmma group stays in flight while the next
// slot is awaited). A warpgroup whose 64 rows are all past the group's end multiplies them all the same (zeros):
// skipping its wgmma behind a branch makes ptxas serialize every wgmma of the kernel (warning C7518).
__device__ void consume(const GroupedKernelArgs& a, std::uint32_t ring, std::uint32_t full, std::uint32_t empty,
                        int half) {
  const int t = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int warp = t / 32, lane = t % 32;
  const int k_stages = a.k / kGroupedTileDepth;
  int slot = 0;
  std::uint32_t phase = 0;
  float acc[128];
  for (int tile = static_cast<int>(blockIdx.x); tile < a.tiles; tile += static_cast<int>(gridDim.x)) {
    const auto at = cuda_plan::decode_grouped_tile(a.schedule, a.groups, tile);
    const int row0 = at.row_block * kGroupedTileRows + half * 64;
    const int rows = a.schedule[2 * at.group] - row0;  // of this warpgroup's 64, when < 64
    int held = -1;                                     // the slot read by the wgmma group still in flight
    for (int ks = 0; ks < k_stages; ++ks) {
      hopper::mbarrier_wait(full + 8 * slot, phase);
      hopper::fence_proxy_async_shared();  // the slot was written by cp.async (generic proxy); wgmma reads async
      hopper::wgmma_fence();
      const std::uint32_t sa = ring + static_cast<std::uint32_t>(slot * kStageBytes) + half * 64 * kRowBytes;
      const std::uint32_t sb = ring + static_cast<std::uint32_t>(slot * kStageBytes) + kABytes;
#pragma unroll
      for (int kk = 0; kk < kGroupedTileDepth / 16; ++kk) {
        // A K-major: k16 step = 32 bytes along the swizzled row; 8-row groups 1024 bytes apart.
        const auto desc_a = hopper::smem_descriptor_sw128(sa + kk * 32, 16, 8 * kRowBytes);
        // B N-major: k16 step = 16 k-rows of 128 bytes; 64-column blocks kBBlockBytes apart, 8-k-row groups 1024.
        const auto desc_b = hopper::smem_descriptor_sw128(sb + kk * 16 * kRowBytes, kBBlockBytes, 8 * kRowBytes);
        hopper::wgmma_m64n256k16_bf16_kn(acc, desc_a, desc_b, ks > 0 || kk > 0);
      }
      hopper::wgmma_commit();
      hopper::wgmma_wait<1>();
      if (held >= 0 && lane == 0) hopper::mbarrier_arrive(empty + 8 * held);
      held = slot;
      if (++slot == kStages) {
        slot = 0;
        phase ^= 1;
      }
    }
    hopper::wgmma_wait<0>();
    if (lane == 0) hopper::mbarrier_arrive(empty + 8 * held);
    // Epilogue: bf16 pairs straight from the accumulators, rows past the group's end skipped.
    const int r = warp * 16 + lane / 4;
    auto* y0 = static_cast<__nv_bfloat16*>(a.table[2 * a.groups + at.group]) + (std::int64_t{row0} + r) * a.n +
               at.col_block * kGroupedTileCols + 2 * (lane % 4);
    auto* y8 = y0 + std::int64_t{8} * a.n;
    const bool store0 = r < rows, store8 = r + 8 < rows;
#pragma unroll
    for (int j = 0; j < kGroupedTileCols / 8; ++j) {
      if (store0) *reinterpret_cast<__nv_bfloat162*>(y0 + j * 8) = __floats2bfloat162_rn(acc[4 * j], acc[4 * j + 1]);
      if (store8)
        *reinterpret_cast<__nv_bfloat162*>(y8 + j * 8) = __floats2bfloat162_rn(acc[4 * j + 2], acc[4 * j + 3]);
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1) grouped_gemm_kernel(const __grid_constant__ GroupedKernelArgs args) {
  extern __shared__ std::uint8_t smem_raw[];
  // The swizzle pattern repeats every 1024 bytes from an aligned address: align the ring.
  const std::uint32_t raw = hopper::smem_address(smem_raw);
  const std::uint32_t ring = (raw + 1023u) & ~1023u;
  const std::uint32_t full = ring + kStages * kStageBytes;  // kStages mbarriers of 8 bytes
  const std::uint32_t empty = full + kStages * 8;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      hopper::mbarrier_init(full + 8 * s, kWarpgroupThreads);  // one cp.async arrival per producer thread
      hopper::mbarrier_init(empty + 8 * s, kConsumers * 4);    // one arrival per consumer warp
    }
    hopper::mbarrier_init_fence();
  }
  __syncthreads();
  const int warpgroup = static_cast<int>(threadIdx.x) / kWarpgroupThreads;
  if (warpgroup == 0) {
    hopper::release_registers<kProducerRegisters>();
    produce(args, ring, full, empty);
  } else {
    hopper::claim_registers<kConsumerRegisters>();
    consume(args, ring, full, empty, warpgroup - 1);
  }
}

}  // namespace

void launch_grouped_gemm_kernel(const GroupedKernelArgs& args, cudaStream_t stream) {
  if (args.tiles == 0) return;
  int device = 0, sms = 0;
  PARATWIN_CUDA_CHECK(cudaGetDevice(&device));
  PARATWIN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  PARATWIN_CUDA_CHECK(
      cudaFuncSetAttribute(grouped_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  const int blocks = std::min(args.tiles, sms);
  grouped_gemm_kernel<<<blocks, kThreads, kSmemBytes, stream>>>(args);
  PARATWIN_CUDA_CHECK(cudaGetLastError());
}

}  // namespace paratwin::cuda
