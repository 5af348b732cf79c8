#pragma once
// The dynamic pair schedule of the persistent fp8 grouped GEMM (fp8_grouped_gemm_kernel.cu), whose clusters of two
// blocks walk cuda_plan::decode_grouped_pair's tile pairs. Cluster c starts with pair c; each later pair is claimed
// from a global counter (claim_next_pair: one atomicAdd, the counter zeroed before the launch), so the pairs in flight
// are always about one wave of consecutive indices. That keeps together the pairs that read the same operand (the row
// pairs of one weight column block are consecutive), whose copies then find it in L2; a static stride (pair c, c +
// clusters, ...) let the clusters drift apart over a long walk, and the later readers of a weight block re-read it
// from device memory.
// Both blocks of a cluster, and in each its producer thread and every consumer thread, must walk the same pairs: rank
// 0's producer claims each pair and pushes it into a small queue held in both blocks' shared memory; the others pop
// it from their own block's copy, a consumer warp once for its 32 threads. Slot s of the queue: a `full` barrier (one
// arrival per phase: the pusher's, in each block), an `empty` barrier (in rank 0's block: one arrival per phase from
// every popper of the cluster: rank 1's producer thread and each consumer warp) and the pair index. The pusher writes
// the index into both blocks and arrives on both `full` barriers with release at cluster scope; a popper (one thread,
// or lane 0 of a warp) waits on its block's `full`, reads the index and arrives on rank 0's `empty` (so that its read
// happens before the slot's next write); a warp's other lanes take the index from lane 0's register by a shuffle and
// never read the slot.
// The waits and the poppers' arrivals are relaxed, each ordered by a fence restricted to shared memory
// (hopper::mbarrier_wait_acquire_shared, mbarrier_arrive_release_shared): the queue orders only shared-memory
// accesses, and an acquire at cluster scope would also invalidate the waiter's L1 at every pop, sending the
// consumers' next reads of the group table to L2 (docs/performance.md). The pusher's arrivals keep release at cluster
// scope: they order its stores into the other block's shared memory.
#include <cstdint>

#include "backend/cuda/hopper_ops.cuh"

namespace paratwin::cuda::grouped_pair {

/// Queue slots. The pusher runs one pair ahead of its own producer, and a producer at most a ring of stages (one
/// k-block each) ahead of the consumers: at most 4 pairs (of one k-block) lie between the newest push and the oldest
/// pop, so 4 slots never hold the pusher back.
constexpr unsigned kPairQueueSlots = 4;
/// Shared-memory bytes of the queue (8-byte aligned, at the same offset in both blocks of the cluster).
constexpr unsigned kPairQueueBytes = kPairQueueSlots * (8 + 8 + 4);

/// The next pair of this block's cluster after its first: the clusters' first pairs are 0 .. clusters - 1, so claims
/// count on from there. Clusters of two blocks.
__device__ inline int claim_next_pair(int* counter) {
  return static_cast<int>(gridDim.x / 2) + atomicAdd(counter, 1);
}

/// A thread's position in the queue: the slot it pushes or pops next and that slot's phase parity.
struct PairQueueCursor {
  unsigned slot = 0;
  unsigned phase = 0;
  __device__ void advance() {
    if (++slot == kPairQueueSlots) {
      slot = 0;
      phase ^= 1;
    }
  }
};

/// The queue at shared-memory offset `base`: kPairQueueSlots `full` barriers, as many `empty` ones, then the indices.
struct PairQueue {
  unsigned base = 0;

  [[nodiscard]] __device__ unsigned full(unsigned slot) const { return base + 8 * slot; }
  [[nodiscard]] __device__ unsigned empty(unsigned slot) const { return base + 8 * (kPairQueueSlots + slot); }
  [[nodiscard]] __device__ unsigned index(unsigned slot) const { return base + 16 * kPairQueueSlots + 4 * slot; }

  /// Thread 0 of each block, before the cluster barrier that precedes any use (and hopper::fence_mbarrier_init):
  /// `poppers` is the number of pop and pop_warp calls of the cluster per pair.
  __device__ void init(unsigned poppers) const {
    for (unsigned s = 0; s < kPairQueueSlots; ++s) {
      hopper::mbarrier_init(full(s), 1);
      hopper::mbarrier_init(empty(s), poppers);
    }
  }
  /// Rank 0's producer thread: waits until every popper has read the slot's previous index, then gives `pair` to both
  /// blocks.
  __device__ void push(PairQueueCursor& at, int pair) const {
    hopper::mbarrier_wait_acquire_shared(empty(at.slot), at.phase ^ 1);  // a fresh barrier reads as released
    for (unsigned rank = 0; rank < 2; ++rank) {
      hopper::st_shared_cluster_u32(index(at.slot), rank, static_cast<unsigned>(pair));
    }
    for (unsigned rank = 0; rank < 2; ++rank) hopper::mbarrier_arrive_release_cluster(full(at.slot), rank);
    at.advance();
  }
  /// A walker of the pairs that is one thread (rank 1's producer): the next pair pushed.
  [[nodiscard]] __device__ int pop(PairQueueCursor& at) const {
    hopper::mbarrier_wait_acquire_shared(full(at.slot), at.phase);
    const auto pair = static_cast<int>(hopper::ld_shared_u32(index(at.slot)));
    hopper::mbarrier_arrive_release_shared(empty(at.slot), 0);
    at.advance();
    return pair;
  }
  /// A walker of the pairs that is a whole warp (all 32 lanes call it together): the next pair pushed. One wait at
  /// cluster scope, one read and one remote arrival per warp instead of per thread. Lane 0 may free the slot before
  /// the shuffle: the other lanes take the index from its register, not from the slot.
  [[nodiscard]] __device__ int pop_warp(PairQueueCursor& at) const {
    int pair = 0;
    if (threadIdx.x % 32 == 0) {
      pair = pop(at);
    } else {
      at.advance();
    }
    return __shfl_sync(0xffffffffu, pair, 0);
  }
};

}  // namespace paratwin::cuda::grouped_pair
