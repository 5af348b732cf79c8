#pragma once
/// nccl-tests' bandwidth definitions (NVIDIA/nccl-tests doc/PERFORMANCE.md), in terms of the trace's fields.
///
/// algbw = S / t and busbw = algbw × factor(kind, n), where S is the size nccl-tests prints for the collective.
/// nccl-tests' S is not always our `bytes` (NCCL's count × sizeof of the call, docs/trace-format.md):
///  - all_gather: S = the gathered output = bytes × n (our bytes is the per-rank send buffer);
///  - reduce_scatter: S = the input = bytes × n (our bytes is the per-rank receive buffer);
///  - all_reduce, broadcast, send, recv: S = bytes; all_to_all: S = bytes (Σ of what one rank sends, itself included).
/// Factors: all_reduce 2(n−1)/n; all_gather, reduce_scatter, all_to_all (n−1)/n; broadcast, send, recv 1.

#include <string_view>

#include "traces/trace.hpp"

namespace paratwin {

/// True for the communication kinds of the trace schema (collectives and send/recv).
[[nodiscard]] bool is_communication_kind(std::string_view kind);
/// nccl-tests' S for `event` (a communication event), in bytes.
[[nodiscard]] double nccl_tests_size_bytes(const Event& event);
/// nccl-tests' bus bandwidth factor of `kind` over `group_size` ranks.
[[nodiscard]] double bus_bandwidth_factor(std::string_view kind, int group_size);

struct Bandwidth {
  double algbw_bytes_per_s = 0;
  double busbw_bytes_per_s = 0;
};
/// algbw and busbw of `event` had it taken `duration_s` (0 when the duration is not positive).
[[nodiscard]] Bandwidth nccl_tests_bandwidth(const Event& event, double duration_s);

}  // namespace paratwin
