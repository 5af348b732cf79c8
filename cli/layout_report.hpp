#pragma once
/// The `paratwin layout` report: every family's groups, each rank's coordinates and placement, warnings, and the
/// link span of every group; as text (like SGLang's logs) or one JSON object.

#include <string>
#include <vector>

#include "topology/placement.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin::cli {

[[nodiscard]] std::string layout_text(const RankLayout& layout, const Placement& placement,
                                      const std::vector<std::string>& warnings);

/// {"world_size", "groups": {family: [[ranks]...]}, "ranks": [...], "warnings": [...], plus "config", "aliases",
/// "creation_order", "spans" and "cluster"}. Every family is spelled out, aliases and singletons included.
[[nodiscard]] std::string layout_json(const RankLayout& layout, const Placement& placement,
                                      const std::vector<std::string>& warnings);

/// "[0..7]" for a run of consecutive ranks, else "[0,2,4]".
[[nodiscard]] std::string format_ranks(const std::vector<int>& ranks);

}  // namespace paratwin::cli
