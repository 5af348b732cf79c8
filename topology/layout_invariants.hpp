#pragma once
/// The invariant checker run on every built layout. It reads a plain GroupTable so that hand-made (broken) layouts,
/// such as the first draft of PR #17213 whose MoE-CP rank lists ran into the next pipeline stage, can be checked.

#include <string>
#include <vector>

#include "topology/parallel_config.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {

/// Every invariant `table` breaks for `config`, one sentence each; empty when the layout is sound:
///  - each family partitions each PP stage (every rank of the stage in exactly one group, groups of equal size);
///  - no ATTN_* / MOE_* group crosses a PP stage; each PP group holds one rank per stage;
///  - ATTN_TP × ATTN_CP × attention-DP and MOE_TP × MOE_EP × MOE_DP are orthogonal grids: two groups of different
///    families of one grid share at most one rank (MOE_DP is skipped when it is aliased to ATTN_CP);
///  - a rank's position in each group equals SGLang's rank formula.
[[nodiscard]] std::vector<std::string> layout_violations(const ParallelConfig& config, const GroupTable& table);

}  // namespace paratwin
