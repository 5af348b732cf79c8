#pragma once
/// Renderings of a Comparison: a text report, CSV and JSON (formats in docs/compare.md, "Outputs").

#include <string>

#include "traces/compare.hpp"

namespace paratwin {

/// Human-readable tables: end to end, per kind, per collective size bucket, per layer, collective bandwidths
/// (aggregated by kind, group size and size bucket; the per-call rows are in CSV/JSON), and the critical paths.
[[nodiscard]] std::string comparison_text(const Comparison& comparison);
/// One table in long form: every row has a `section` (e2e, kind, collective_size, layer, op, collective,
/// path_predicted, path_measured) and the columns that apply to it; the others are empty.
[[nodiscard]] std::string comparison_csv(const Comparison& comparison);
/// The whole comparison as one JSON object (deterministic text).
[[nodiscard]] std::string comparison_json(const Comparison& comparison);

}  // namespace paratwin
