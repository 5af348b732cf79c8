#pragma once
/// The microbenchmark schedule behind `paratwin bench`: every collective of the schedule IR over a sweep of sizes on
/// every group shape a world of `gpus` ranks offers, then every compute kernel kind over a sweep of shapes. It is an
/// ordinary Schedule, so the CUDA backend measures it and the simulator predicts it with the same op ids, and
/// `paratwin calibrate` fits the simulator to the measured trace.
///
/// Group shapes: a world of n GPUs is laid out as SGLang's `--tp-size n --attn-cp-size n/2` (n ≥ 4), whose TP group
/// holds all n ranks, ATTN_TP groups hold 2 adjacent ranks and ATTN_CP groups n/2 ranks at stride 2; with 2 GPUs the
/// one shape is TP = 2. Every op waits for the previous one, so the ops never overlap and each duration is the op's.

#include <cstdint>

#include "models/schedule.hpp"

namespace paratwin {

struct BenchScheduleOptions {
  int gpus = 2;                               ///< world size (ranks = GPUs)
  std::int64_t min_bytes = std::int64_t{4} << 10;  ///< smallest collective size (nccl-tests' "size": the larger buffer)
  std::int64_t max_bytes = std::int64_t{1} << 30;  ///< largest collective size; sizes double from min to max
  bool collectives = true;
  bool compute = true;
};

/// Throws paratwin::Error naming the option for a world that is not 1, 2 or a multiple of 4, or a size range that is
/// empty, not a power-of-two ratio, or not a multiple of 2·gpus·16 bytes at its low end (every rank's share must be a
/// whole number of 16-byte bf16 vectors).
[[nodiscard]] Schedule build_bench_schedule(const BenchScheduleOptions& options);

}  // namespace paratwin
