#pragma once
// Hopper (sm_90a) building blocks of the backend's own warp-specialized GEMM kernels (grouped_gemm_kernel.cu):
// mbarrier waits and arrivals, 16-byte asynchronous copies that complete on an mbarrier, the 128-byte shared-memory
// swizzle, wgmma shared-memory descriptors, the bf16 wgmma m64n256k16 and its fences, and register reallocation
// between warpgroups. Each wrapper is one or two PTX instructions; the comments say what the caller must guarantee.
// (Named for GEMMs so that other Hopper helper headers of the backend can sit beside it.)
#include <cuda_bf16.h>

#include <cstdint>

namespace paratwin::cuda::hopper {

/// Shared-memory (CTA window) address of a generic pointer into shared memory.
__device__ inline std::uint32_t smem_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// ------------------------------------------------------------------------------------------------ mbarrier

/// Initialises the mbarrier at `bar` to expect `arrivals` arrivals per phase. One thread; make the initialisation
/// visible (mbarrier_init_fence, then a block barrier) before any other thread uses it.
__device__ inline void mbarrier_init(std::uint32_t bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals));
}
/// Orders the mbarrier initialisations before their use by the asynchronous proxy and other threads.
__device__ inline void mbarrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// One arrival of this thread on `bar`.
__device__ inline void mbarrier_arrive(std::uint32_t bar) {
  asm volatile(
      "{\n"
      ".reg .b64 state;\n"
      "mbarrier.arrive.shared::cta.b64 state, [%0];\n"
      "}\n" ::"r"(bar)
      : "memory");
}
/// Whether the phase of parity `parity` of `bar` has completed (the hardware may suspend the thread a while first).
/// A fresh barrier is in phase 0, so parity 1 reads as completed: that is how a producer sees every stage empty at
/// the start.
__device__ inline bool mbarrier_try_wait(std::uint32_t bar, std::uint32_t parity) {
  std::uint32_t done = 0;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
__device__ inline void mbarrier_wait(std::uint32_t bar, std::uint32_t parity) {
  while (!mbarrier_try_wait(bar, parity)) {
  }
}

// ------------------------------------------------------------------------------------------------ copies

/// 16 bytes global → shared, zero-filled when !valid (`gmem` must still be a valid address).
__device__ inline void cp_async_16(std::uint32_t smem_addr, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_bytes)
               : "memory");
}
/// Counts as one of `bar`'s expected arrivals once every cp.async this thread issued before it has landed (.noinc:
/// the barrier's arrival count includes this thread).
__device__ inline void cp_async_arrive_on(std::uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ inline void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}
/// Makes shared memory written through the generic proxy (ordinary stores, cp.async), as seen by this thread,
/// visible to its later asynchronous-proxy accesses (wgmma operand reads).
__device__ inline void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/// The 128-byte swizzle (CuTe's Swizzle<3,4,3>) of a byte offset inside a 1024-byte-aligned region: the 16-byte
/// chunk index (bits 4–6) is XORed with the row index within the 8-row, 1024-byte atom (bits 7–9). Rows of 128 bytes
/// stored so are what wgmma reads with the 128-byte swizzle mode, and 8 consecutive 16-byte writes of one row hit 8
/// different bank groups.
__host__ __device__ constexpr std::uint32_t swizzle_128b(std::uint32_t offset) {
  return offset ^ ((offset >> 3) & 0x70u);
}

// ------------------------------------------------------------------------------------------------ wgmma

/// A wgmma shared-memory matrix descriptor, 128-byte swizzle mode (PTX ISA "Matrix Descriptor Format"): start address,
/// leading- and stride-dimension byte offsets (each encoded >> 4), base offset 0 (swizzle atoms 1024-byte aligned).
/// K-major operand (rows of 64 bf16 along k): `stride_bytes` = distance between 8-row groups, `leading_bytes` unused.
/// MN-major operand (rows of 64 bf16 along m or n, one row per k): `leading_bytes` = distance between 64-wide blocks
/// along m/n, `stride_bytes` = distance between groups of 8 k-rows. (Both readings, the PTX ISA's canonical layouts,
/// are checked on H200 by gpu_tests' persistent grouped GEMM cases: K-major X, N-major W.)
__device__ inline std::uint64_t smem_descriptor_sw128(std::uint32_t smem_addr, std::uint32_t leading_bytes,
                                                      std::uint32_t stride_bytes) {
  std::uint64_t desc = (smem_addr & 0x3FFFFu) >> 4;
  desc |= static_cast<std::uint64_t>((leading_bytes & 0x3FFFFu) >> 4) << 16;
  desc |= static_cast<std::uint64_t>((stride_bytes & 0x3FFFFu) >> 4) << 32;
  desc |= std::uint64_t{1} << 62;  // 128-byte swizzle
  return desc;
}

/// Before the first wgmma of a sequence and whenever the accumulator registers were touched by other instructions.
__device__ inline void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
/// Closes the wgmma operations issued so far into one group.
__device__ inline void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
/// Waits until at most `kPending` committed groups are still running (their shared-memory reads and accumulator
/// writes included).
template <int kPending>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

/// d[64 × 256] (+)= a[64 × 16] · b[16 × 256], bf16 in, fp32 accumulators, issued by one whole warpgroup. A is K-major
/// in shared memory, B N-major (rows of n, one per k). `accumulate` false: d = a·b. Accumulator layout: thread t of
/// the warpgroup holds, for j in 0..31, d[4j + h·2 + e] = element (row 16·(t/32) + (t%32)/4 + 8h, column 8j +
/// 2·(t%4) + e).
__device__ inline void wgmma_m64n256k16_bf16_kn(float (&d)[128], std::uint64_t desc_a, std::uint64_t desc_b,
                                                bool accumulate) {
  const int scale_d = accumulate ? 1 : 0;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111,"
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127},"
      " %128, %129, p, 1, 1, 0, 1;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]),
        "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]),
        "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),
        "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]),
        "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]),
        "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
        "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]),
        "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]),
        "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

/// Lowers (dealloc) or raises (alloc) this warpgroup's registers per thread to kRegisters; the kernel must have a
/// register cap at entry (__launch_bounds__(threads, 1)) and every warp of the warpgroup must execute it.
template <int kRegisters>
__device__ inline void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ inline void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

}  // namespace paratwin::cuda::hopper
