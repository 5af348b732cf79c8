#pragma once
/// Builds the schedule of one forward step (prefill or decode) of `model` under `config`.

#include <string>

#include "models/model_spec.hpp"
#include "models/schedule.hpp"
#include "models/schedule_options.hpp"

namespace paratwin {

/// Largest schedule paratwin builds (ops over all ranks); beyond it, cut layers (--layers) or shrink the layout.
inline constexpr std::int64_t kMaxScheduleOps = 60'000'000;

/// Throws paratwin::Error naming the flag and the rule for combinations the schemes cannot run (Ulysses with heads
/// not divisible by cp, zigzag with fewer tokens than 2·cp, ...), then builds every rank's ops.
[[nodiscard]] Schedule build_schedule(const ModelSpec& model, const ParallelConfig& config,
                                      const ScheduleOptions& options);

/// The checks build_schedule runs before building, without building: throws paratwin::Error naming the flag and the
/// rule when `model` under `config` cannot run `options`.
void check_schedule_options(const ModelSpec& model, const ParallelConfig& config, const ScheduleOptions& options);

/// check_schedule_options without the config's structural checks (structural_errors) and without throwing: the
/// sentence it would throw, or "" when `options` fit. What the planner filters millions of layouts with, where an
/// exception per rejected layout cost most of the enumeration's time.
[[nodiscard]] std::string schedule_options_violation(const ModelSpec& model, const ParallelConfig& config,
                                                     const ScheduleOptions& options);

/// The MoE mode a schedule uses: the option if given, else all-to-all when ep > 1, else gather.
[[nodiscard]] MoeMode resolve_moe_mode(const ParallelConfig& config, const ScheduleOptions& options);

}  // namespace paratwin
