#pragma once
/// How the fp8 expert GEMMs of one MoE op (backend/cuda/fp8_grouped_gemm.hpp) spread over side streams without a race
/// on the rows a block-scaled call writes past its group.
///
/// The experts' rows are consecutive blocks of one output Y (group g owns rows [offset_g, offset_g + rows_g)), but
/// a block-scaled cuBLASLt call runs its rows rounded up to `row_multiple` (4: backend/cuda/fp8_gemm.hpp) and writes
/// the extra rows too: up to 3 garbage rows in the next groups' first rows (or in spare rows past the last group).
/// On one stream the next group's own GEMM overwrites them later; across streams that order has to be made.
///
/// The plan: each side stream takes one contiguous run of groups (rows balanced over the streams). A run's last
/// groups that write past its end, together with the groups that write into those (its "tail": the smallest suffix
/// of the run that the groups before it do not write into), run first on their stream, which then records a signal;
/// the next run's other groups (its "head") wait for that signal. So every row is written last by its own group:
/// - in a run, head and tail each run in group order (the sequential case), the head writes no row of the tail;
/// - a tail's overflow lands in the next run's head (the plan makes sure of it, merging a run into the one before it
///   where the next run's head is too short to hold it), whose groups run after the signal;
/// - nothing else writes outside its own run.
/// The tails are what the streams cannot overlap: at most one call per stream at ~256 rows per expert, and it runs
/// concurrently with the other streams' tails.
/// Plain C++ (no CUDA): the CPU tests check the plan against every interleaving the streams allow.

#include <cstdint>
#include <vector>

namespace paratwin::cuda_plan {

/// One side stream's share: groups [first, end), run as the tail [tail, end) first, then (after the previous
/// stream's signal where `waits_for_previous`) the head [first, tail).
struct Fp8StreamRun {
  std::int64_t first = 0, tail = 0, end = 0;
  bool waits_for_previous = false;  ///< the previous run has a tail that writes into this run's head
  [[nodiscard]] bool has_tail() const { return tail < end; }
};

/// The runs, in group order (one per side stream used; fewer than the streams where there are fewer rows to share or
/// where merging made them fewer), covering every group once. Empty for no groups.
/// `group_rows`: rows per group (≥ 0, empty groups included); streams ≥ 1; row_multiple ≥ 1.
[[nodiscard]] std::vector<Fp8StreamRun> plan_fp8_group_streams(const std::vector<std::int64_t>& group_rows, int streams,
                                                               std::int64_t row_multiple);

}  // namespace paratwin::cuda_plan
