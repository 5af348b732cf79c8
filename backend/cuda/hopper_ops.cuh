#pragma once
// Hopper's (sm_90a) asynchronous building blocks, as small inline-PTX device helpers: mbarriers (arrive / expect a
// byte count / wait on a phase), 2-D bulk tensor copies (TMA) into shared memory that complete on an mbarrier (also
// multicast to the blocks of a cluster), bulk copies from global to shared memory and back, cluster ranks, remote
// arrivals and the cluster barrier, named barriers, register re-allocation between warpgroups, and the warpgroup MMA
// (wgmma) reading both operands from shared memory through matrix descriptors (K-major, and MN-major for a B stored as
// rows of n). Used by indexer_wgmma.cu, indexer_fp8_wgmma.cu, grouped_gemm_kernel.cu, fp8_grouped_gemm_kernel.cu and
// sparse_mla_wgmma.cu.
// Names follow the PTX instructions they wrap (PTX ISA 8.x, "Asynchronous warpgroup level matrix multiply-accumulate"
// and "mbarrier"); the comments say what the caller must guarantee.
#include <cstdint>

namespace paratwin::cuda::hopper {

/// The shared-memory (state space) address of a generic pointer into shared memory, as the PTX below expects.
__device__ inline unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// ---- mbarriers (64-bit barrier objects in shared memory) ------------------------------------------------------

/// Initializes the barrier at `bar` to wait for `arrivals` arrivals per phase.
__device__ inline void mbarrier_init(unsigned bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
/// Makes the initializations above visible to the other threads and to the copy engine (the async proxy) before they
/// use the barriers; follow with a block barrier.
__device__ inline void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// One arrival.
__device__ inline void mbarrier_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/// One arrival that also tells the barrier to wait for `bytes` more bytes of asynchronous copies (complete_tx).
__device__ inline void mbarrier_arrive_expect_bytes(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
/// Waits until the barrier's phase of parity `parity` has completed (phases alternate 0, 1, 0, ...; the first is 0).
__device__ inline void mbarrier_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_again:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// ---- bulk tensor copies (TMA) -----------------------------------------------------------------------------------

/// Copies the box at element coordinates (x, y) of the 2-D tensor described by `tensor_map` (a CUtensorMap in
/// parameter or global memory) to shared memory at `dst`, laid out and swizzled as the map says; the bytes count
/// towards `bar`'s expected transaction bytes. Elements outside the tensor are written as zeros.
__device__ inline void tma_load_2d(unsigned dst, const void* tensor_map, unsigned bar, int x, int y) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(tensor_map)), "r"(x), "r"(y), "r"(bar)
      : "memory");
}

/// As tma_load_2d, into the same shared-memory offset `dst` of every block of the cluster whose rank is set in
/// `cta_mask`, the bytes counted on the barrier at offset `bar` of each of them.
__device__ inline void tma_load_2d_multicast(unsigned dst, const void* tensor_map, unsigned bar, int x, int y,
                                             std::uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, "
      "{%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(tensor_map)), "r"(x), "r"(y), "r"(bar), "h"(cta_mask)
      : "memory");
}

/// Copies `bytes` (a multiple of 16) from global memory at `src` to this block's shared memory at `dst` (both 16-byte
/// aligned) with the copy engine; the bytes count towards `bar`'s expected transaction bytes, as tma_load_2d's.
__device__ inline void bulk_load(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

/// Copies `bytes` (a multiple of 16) from shared memory at `src` to global memory at `dst` (both 16-byte aligned) with
/// the copy engine, as part of this thread's current bulk group (bulk_commit_group closes it). The shared memory must
/// have been written before through fence_proxy_async_shared (the copy engine reads it through the async proxy).
__device__ inline void bulk_store(void* dst, unsigned src, unsigned bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes)
               : "memory");
}
/// Closes this thread's bulk copies issued since the last commit into one bulk group.
__device__ inline void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
/// Waits until every bulk group of this thread has read its shared-memory source (the source may then be rewritten).
__device__ inline void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/// Waits until every bulk group of this thread has completed (its writes are done).
__device__ inline void bulk_wait_group() {
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}
/// Orders this thread's ordinary shared-memory writes before the copy engine's (the async proxy's) reads of them;
/// follow with a barrier among the writing threads and the thread that issues the copy.
__device__ inline void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/// Stores 4 bytes at shared-memory address `addr`.
__device__ inline void st_shared_b32(unsigned addr, unsigned value) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(value) : "memory");
}
/// The float at shared-memory address `addr`.
__device__ inline float ld_shared_f32(unsigned addr) {
  float value = 0.0f;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(value) : "r"(addr) : "memory");
  return value;
}
/// The 4 bytes at shared-memory address `addr`.
__device__ inline unsigned ld_shared_u32(unsigned addr) {
  unsigned value = 0;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(value) : "r"(addr) : "memory");
  return value;
}
/// Two floats as a pair of bf16 (round to nearest even): `lo` in the low 16 bits (the lower address in memory).
__device__ inline unsigned pack_bf16x2(float lo, float hi) {
  unsigned packed = 0;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(hi), "f"(lo));
  return packed;
}

// ---- clusters (thread-block clusters of sm_90) ----------------------------------------------------------------

/// This block's rank in its cluster.
__device__ inline unsigned cluster_cta_rank() {
  unsigned rank = 0;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}
/// One arrival on the barrier at shared-memory offset `bar` of the cluster's block `cta_rank` (another block's, or
/// this block's own), with the default release semantics at CTA scope: enough where the arriving thread only read
/// the memory the barrier guards through wgmma, whose completion it waited for (the scope .cluster makes every such
/// arrival a cluster-wide fence).
__device__ inline void mbarrier_arrive_cluster(unsigned bar, unsigned cta_rank) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(cta_rank)
      : "memory");
}
/// As mbarrier_arrive_cluster, with release semantics at cluster scope: the arriving thread's earlier shared-memory
/// reads and writes, the other block's included (st_shared_cluster_u32), happen before whatever a thread does after
/// its mbarrier_wait_acquire_shared on the phase this arrival completes.
__device__ inline void mbarrier_arrive_release_cluster(unsigned bar, unsigned cta_rank) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(cta_rank)
      : "memory");
}
/// Waits for phase `parity` of this block's barrier at shared-memory offset `bar` with a relaxed wait, then a fence
/// whose acquire covers only shared memory of the cluster: the shared-memory writes (this block's or the other's) that
/// the completing arrivals released (mbarrier_arrive_release_cluster, mbarrier_arrive_release_shared) happen before
/// this thread's later shared-memory accesses. Global memory is left out of the ordering: sm_90 ptxas turns an
/// acquire wait at cluster scope into an invalidation of the SM's L1 (CCTL.IVALL), and this fence into none
/// (docs/performance.md).
__device__ inline void mbarrier_wait_acquire_shared(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_again:\n"
      "mbarrier.try_wait.parity.relaxed.cluster.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n"
      "fence.acquire.sync_restrict::shared::cluster.cluster;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

/// One arrival on the barrier at shared-memory offset `bar` of the cluster's block `cta_rank`, after a fence whose
/// release covers only this block's shared memory: enough where the arriving thread's accesses to be ordered are
/// reads and writes of its own block's shared memory (a popper's read of its slot).
__device__ inline void mbarrier_arrive_release_shared(unsigned bar, unsigned cta_rank) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "fence.release.sync_restrict::shared::cta.cluster;\n"
      "mbarrier.arrive.relaxed.cluster.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(bar),
      "r"(cta_rank)
      : "memory");
}

/// Stores 4 bytes at shared-memory offset `addr` of the cluster's block `cta_rank` (another block's, or this one's).
__device__ inline void st_shared_cluster_u32(unsigned addr, unsigned cta_rank, unsigned value) {
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "st.shared::cluster.u32 [remote], %2;\n"
      "}\n" ::"r"(addr),
      "r"(cta_rank), "r"(value)
      : "memory");
}
/// Waits until every thread of every block of the cluster has arrived here (all threads of each warp take part):
/// orders barrier initialisations before the other block's use, and keeps a block alive while the other may still
/// write its shared memory.
__device__ inline void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// ---- the operand ring of the persistent grouped GEMMs (clusters of two blocks) -------------------------------------

/// A consumer is done reading ring slot `slot`, which the producers of both blocks of its pair write (multicast):
/// arrives on this block's empty barrier of the slot and, remotely at CTA scope, on the other block's
/// (docs/performance.md has what cluster scope cost). Who arrives (a thread per warp, or every thread) is the
/// kernel's choice, matched by the barrier's count.
__device__ inline void release_pair_slot(unsigned empty, unsigned rank, int slot) {
  mbarrier_arrive(empty + 8 * static_cast<unsigned>(slot));
  mbarrier_arrive_cluster(empty + 8 * static_cast<unsigned>(slot), rank ^ 1);
}
/// The ring position the consumers read next, advanced stage by stage (the parity flips each time the ring wraps).
template <int kStages>
struct RingCursor {
  unsigned rank = 0;  ///< this block's in its cluster
  int slot = 0;
  unsigned phase = 0;
  __device__ void advance() {
    if (++slot == kStages) {
      slot = 0;
      phase ^= 1;
    }
  }
};

// ---- named barriers and register re-allocation -------------------------------------------------------------------

// The non-.aligned forms (`barrier.sync`, not `bar.sync` = `barrier.sync.aligned`): warp-specialized kernels meet at
// one barrier from different code (two template instances of a consumer, a producer's branch), and .aligned promises
// that every thread executes the same barrier instruction; compute-sanitizer's synccheck reports such a meeting as
// divergent threads.
/// Waits at hardware barrier `id` (1..15; 0 is __syncthreads) until `threads` threads have arrived or waited there.
__device__ inline void named_barrier_sync(unsigned id, unsigned threads) {
  asm volatile("barrier.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
/// Arrives at hardware barrier `id` without waiting.
__device__ inline void named_barrier_arrive(unsigned id, unsigned threads) {
  asm volatile("barrier.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
/// The calling warpgroup gives registers back (down to kRegs per thread) / takes more (up to kRegs). Takes effect
/// only in a kernel with a register cap at entry (__launch_bounds__(threads, 1)); all warps of the group execute it.
template <unsigned kRegs>
__device__ inline void warpgroup_release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <unsigned kRegs>
__device__ inline void warpgroup_claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
/// Whether a block of one producer and `consumers` consumer warpgroups, launched with __launch_bounds__(its threads,
/// 1), can re-allocate to `producer` and `consumer` registers per thread. setmaxnreg only moves registers within what
/// the block holds at launch, 65,536 / threads per thread rounded down to the allocation unit of 8 (168 at 384
/// threads: 64,512, not the register file's 65,536), and a claim beyond that waits forever: a hang, not an error.
constexpr bool warpgroup_registers_fit(unsigned producer, unsigned consumer, unsigned consumers) {
  const unsigned threads = 128 * (1 + consumers);
  const unsigned at_launch = 65536 / threads / 8 * 8;
  return 128 * producer + 128 * consumers * consumer <= at_launch * threads;
}

// ---- warpgroup MMA ----------------------------------------------------------------------------------------------

/// Matrix descriptor of a K-major operand tile in shared memory written with the 128-byte swizzle (TMA's
/// CU_TENSOR_MAP_SWIZZLE_128B): rows of 64 bf16 (128 bytes), 8-row groups 1024 bytes apart, the tile 1024-byte
/// aligned. `start` may point 32·i bytes into the first row to select the i-th 16-element K slice. Bit fields: start
/// address >> 4 (bits 0-13), leading byte offset >> 4 (16-29; unused by swizzled K-major tiles, 1 by convention),
/// stride byte offset >> 4 (32-45: the 1024 bytes between 8-row groups), swizzle mode (62-63: 1 = 128 bytes).
__device__ inline std::uint64_t smem_descriptor_k_major_sw128(unsigned start) {
  constexpr std::uint64_t kLeadingByteOffset = 1;
  constexpr std::uint64_t kStrideByteOffset = 1024 >> 4;
  constexpr std::uint64_t kSwizzle128B = 1;
  return static_cast<std::uint64_t>((start & 0x3FFFFu) >> 4) | kLeadingByteOffset << 16 | kStrideByteOffset << 32 |
         kSwizzle128B << 62;
}

/// Matrix descriptor of an MN-major operand tile (B stored as rows of n, one row per k) written with the 128-byte
/// swizzle: blocks of 64 bf16 along n (128-byte rows, one per k), each block's 8-k-row groups 1024 bytes apart, the
/// blocks `block_bytes` apart along n, every block 1024-byte aligned. `start` may point 16·128·i bytes into the block
/// to select the i-th 16-row K slice. Bit fields as above: leading byte offset = the distance between the 64-wide
/// blocks along n, stride byte offset = the 1024 bytes between 8-k-row groups (the PTX ISA's canonical MN-major
/// layout; checked on H200 by gpu_tests' persistent grouped GEMM cases).
__device__ inline std::uint64_t smem_descriptor_mn_major_sw128(unsigned start, unsigned block_bytes) {
  constexpr std::uint64_t kStrideByteOffset = 1024 >> 4;
  constexpr std::uint64_t kSwizzle128B = 1;
  return static_cast<std::uint64_t>((start & 0x3FFFFu) >> 4) |
         static_cast<std::uint64_t>((block_bytes & 0x3FFFFu) >> 4) << 16 | kStrideByteOffset << 32 | kSwizzle128B << 62;
}

/// Orders this warpgroup's register accesses before the wgmma that follow (needed before the first wgmma of a
/// group whose accumulators other instructions touched).
__device__ inline void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
/// Closes the wgmma issued since the last commit into one group.
__device__ inline void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
/// Waits until at most kPending of this warp's committed wgmma groups are still running.
template <int kPending>
__device__ inline void wgmma_wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// wgmma's accumulator operands, 16 at a time, for the wrappers below (32, 64 or 128 of them): the placeholders
// "%i, … %i+15" of one line of the instruction's register list, and the "+f" constraints of d[i] … d[i + 15].
#define PARATWIN_WGMMA_REGS_0 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define PARATWIN_WGMMA_REGS_16 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define PARATWIN_WGMMA_REGS_32 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define PARATWIN_WGMMA_REGS_48 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define PARATWIN_WGMMA_REGS_64 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define PARATWIN_WGMMA_REGS_80 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define PARATWIN_WGMMA_REGS_96 \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define PARATWIN_WGMMA_REGS_112 \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define PARATWIN_WGMMA_D16(d, i)                                                                                    \
  "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]),       \
      "+f"(d[(i) + 6]), "+f"(d[(i) + 7]), "+f"(d[(i) + 8]), "+f"(d[(i) + 9]), "+f"(d[(i) + 10]), "+f"(d[(i) + 11]), \
      "+f"(d[(i) + 12]), "+f"(d[(i) + 13]), "+f"(d[(i) + 14]), "+f"(d[(i) + 15])
#define PARATWIN_WGMMA_REGISTERS_32 "{" PARATWIN_WGMMA_REGS_0 ",\n " PARATWIN_WGMMA_REGS_16 "},\n"
#define PARATWIN_WGMMA_REGISTERS_64                                                                                   \
  "{" PARATWIN_WGMMA_REGS_0 ",\n " PARATWIN_WGMMA_REGS_16 ",\n " PARATWIN_WGMMA_REGS_32 ",\n " PARATWIN_WGMMA_REGS_48 \
  "},\n"
#define PARATWIN_WGMMA_REGISTERS_128                                                                                  \
  "{" PARATWIN_WGMMA_REGS_0 ",\n " PARATWIN_WGMMA_REGS_16 ",\n " PARATWIN_WGMMA_REGS_32 ",\n " PARATWIN_WGMMA_REGS_48 \
  ",\n " PARATWIN_WGMMA_REGS_64 ",\n " PARATWIN_WGMMA_REGS_80 ",\n " PARATWIN_WGMMA_REGS_96                           \
  ",\n " PARATWIN_WGMMA_REGS_112 "},\n"
#define PARATWIN_WGMMA_D32(d) PARATWIN_WGMMA_D16(d, 0), PARATWIN_WGMMA_D16(d, 16)
#define PARATWIN_WGMMA_D64(d) \
  PARATWIN_WGMMA_D16(d, 0), PARATWIN_WGMMA_D16(d, 16), PARATWIN_WGMMA_D16(d, 32), PARATWIN_WGMMA_D16(d, 48)
#define PARATWIN_WGMMA_D128(d)                                                                               \
  PARATWIN_WGMMA_D16(d, 0), PARATWIN_WGMMA_D16(d, 16), PARATWIN_WGMMA_D16(d, 32), PARATWIN_WGMMA_D16(d, 48), \
      PARATWIN_WGMMA_D16(d, 64), PARATWIN_WGMMA_D16(d, 80), PARATWIN_WGMMA_D16(d, 96), PARATWIN_WGMMA_D16(d, 112)

/// How wgmma reads its B operand from shared memory: K-major (b stored as 256 rows of k, smem_descriptor_k_major_sw128)
/// or N-major (rows of n, one per k, smem_descriptor_mn_major_sw128): PTX's imm-trans-b 0 or 1.
enum class WgmmaB : int { kKMajor = 0, kNMajor = 1 };

/// d (64 × 256, fp32) = a · b (+ d when `accumulate`): a 64 × 16 (K-major) and b 16 × 256 bf16 tiles in shared memory,
/// b laid out as kB says, given by descriptors. Asynchronous: d must not be touched until wgmma_wait_group says the
/// group is done. Thread t of the warpgroup holds d[4c + 2h + e] = D[16·(t/32) + (t%32)/4 + 8h][8c + 2·(t%4) + e]
/// (c < 64, h, e < 2).
template <WgmmaB kB = WgmmaB::kKMajor>
__device__ inline void wgmma_m64n256k16_bf16(float (&d)[128], std::uint64_t desc_a, std::uint64_t desc_b,
                                             bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16\n" PARATWIN_WGMMA_REGISTERS_128
      "%128, %129, accumulate, 1, 1, 0, %131;\n"
      "}\n"
      : PARATWIN_WGMMA_D128(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate ? 1 : 0), "n"(static_cast<int>(kB)));
}

/// d (64 × 256, fp32) += a · b with a (64 × 16 bf16) from registers and b (16 × 256) N-major in shared memory
/// (smem_descriptor_mn_major_sw128). The register fragment: a[0] = A[r][2q, 2q+1], a[1] = A[r + 8][2q, 2q+1],
/// a[2] = A[r][2q + 8, 2q + 9], a[3] = A[r + 8][2q + 8, 2q + 9] with r = 16·(t/32) + (t%32)/4, q = t%4 (low bf16 =
/// lower column): the layout of an m64n16 accumulator tile, so a thread's fp32 results (the sparse MLA kernel's
/// scores) become its A operand without moving between threads.
__device__ inline void wgmma_m64n256k16_bf16_rs(float (&d)[128], const unsigned (&a)[4], std::uint64_t desc_b) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16\n" PARATWIN_WGMMA_REGISTERS_128
      "{%128, %129, %130, %131}, %132, accumulate, 1, 1, 1;\n"
      "}\n"
      : PARATWIN_WGMMA_D128(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

/// d (64 × 64, fp32) = a · b (+ d when `accumulate`), a and b K-major in shared memory (smem_descriptor_k_major_sw128).
/// Thread t of the warpgroup holds d[4c + 2h + e] = D[16·(t/32) + (t%32)/4 + 8h][8c + 2·(t%4) + e] (c < 8, h, e < 2).
__device__ inline void wgmma_m64n64k16_bf16(float (&d)[32], std::uint64_t desc_a, std::uint64_t desc_b,
                                            bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16\n" PARATWIN_WGMMA_REGISTERS_32
      "%32, %33, accumulate, 1, 1, 0, 0;\n"
      "}\n"
      : PARATWIN_WGMMA_D32(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate ? 1 : 0));
}

/// d (64 × 128, fp32) = a · b (+ d when `accumulate`): as wgmma_m64n256k16_bf16 with half the columns. Thread t of the
/// warpgroup holds d[4c + 2h + e] = D[16·(t/32) + (t%32)/4 + 8h][8c + 2·(t%4) + e] (c < 16, h, e < 2).
template <WgmmaB kB = WgmmaB::kKMajor>
__device__ inline void wgmma_m64n128k16_bf16(float (&d)[64], std::uint64_t desc_a, std::uint64_t desc_b,
                                             bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16\n" PARATWIN_WGMMA_REGISTERS_64
      "%64, %65, accumulate, 1, 1, 0, %67;\n"
      "}\n"
      : PARATWIN_WGMMA_D64(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate ? 1 : 0), "n"(static_cast<int>(kB)));
}

/// d (64 × 256, fp32) = a · b (+ d when `accumulate`) for fp8 e4m3 operands: a 64 × 32 and b 32 × 256 tiles in shared
/// memory, both K-major (b stored as 256 rows of k), given by smem_descriptor_k_major_sw128 descriptors (a k32 step of
/// e4m3 is 32 bytes along the swizzled rows). Same accumulator layout as wgmma_m64n256k16_bf16.
__device__ inline void wgmma_m64n256k32_e4m3(float (&d)[128], std::uint64_t desc_a, std::uint64_t desc_b,
                                             bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3\n" PARATWIN_WGMMA_REGISTERS_128
      "%128, %129, accumulate, 1, 1;\n"
      "}\n"
      : PARATWIN_WGMMA_D128(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate ? 1 : 0));
}

/// d (64 × 128, fp32) = a · b (+ d when `accumulate`) for fp8 e4m3 operands: a 64 × 32 and b 32 × 128 tiles in shared
/// memory, both K-major (fp8 wgmma takes no transposed operand: b stored as 128 rows of k), given by
/// smem_descriptor_k_major_sw128 descriptors (a k32 step of e4m3 is 32 bytes along the swizzled rows, as a k16 step of
/// bf16). Same accumulator layout as wgmma_m64n128k16_bf16.
__device__ inline void wgmma_m64n128k32_e4m3(float (&d)[64], std::uint64_t desc_a, std::uint64_t desc_b,
                                             bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred accumulate;\n"
      "setp.ne.b32 accumulate, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3\n" PARATWIN_WGMMA_REGISTERS_64
      "%64, %65, accumulate, 1, 1;\n"
      "}\n"
      : PARATWIN_WGMMA_D64(d)
      : "l"(desc_a), "l"(desc_b), "r"(accumulate ? 1 : 0));
}

#undef PARATWIN_WGMMA_REGS_0
#undef PARATWIN_WGMMA_REGS_16
#undef PARATWIN_WGMMA_REGS_32
#undef PARATWIN_WGMMA_REGS_48
#undef PARATWIN_WGMMA_REGS_64
#undef PARATWIN_WGMMA_REGS_80
#undef PARATWIN_WGMMA_REGS_96
#undef PARATWIN_WGMMA_REGS_112
#undef PARATWIN_WGMMA_D16
#undef PARATWIN_WGMMA_REGISTERS_32
#undef PARATWIN_WGMMA_REGISTERS_64
#undef PARATWIN_WGMMA_REGISTERS_128
#undef PARATWIN_WGMMA_D32
#undef PARATWIN_WGMMA_D64
#undef PARATWIN_WGMMA_D128

/// Keeps the compiler from moving reads or writes of the accumulators across an asynchronous wgmma (it cannot see
/// that the tensor cores write them until wgmma_wait_group returns).
template <int kN>
__device__ inline void wgmma_fence_operands(float (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

}  // namespace paratwin::cuda::hopper
