#pragma once
/// The schedule as JSON: lossless both ways, so a schedule written by `paratwin schedule --out` runs unchanged on
/// either backend. Format: {"format": "paratwin-schedule", "version": 1, "meta": {...}, "ranks": [[op, ...], ...]}.

#include <string>
#include <string_view>

#include "models/schedule.hpp"

namespace paratwin {

[[nodiscard]] std::string schedule_to_json(const Schedule& schedule);
/// Throws paratwin::Error naming `source`, the rank/op and the field for anything malformed or missing.
[[nodiscard]] Schedule schedule_from_json(std::string_view json_text, std::string_view source);
/// A stable 64-bit FNV-1a hash of the canonical JSON, as 16 hex digits: equal hashes mean the same schedule.
[[nodiscard]] std::string schedule_hash(const Schedule& schedule);

}  // namespace paratwin
