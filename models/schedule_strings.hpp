#pragma once
/// Parsing of the schedule IR's enums from the names `to_string` gives them (models/schedule.hpp). Unknown names
/// throw paratwin::Error listing the accepted ones.

#include <string_view>

#include "models/schedule.hpp"

namespace paratwin {

[[nodiscard]] ComputeKind parse_compute_kind(std::string_view text);
[[nodiscard]] CollectiveKind parse_collective_kind(std::string_view text);
[[nodiscard]] Stream parse_stream(std::string_view text);
[[nodiscard]] Phase parse_phase(std::string_view text);
[[nodiscard]] CpAlgorithm parse_cp_algorithm(std::string_view text);
[[nodiscard]] CpSplit parse_cp_split(std::string_view text);
[[nodiscard]] MoeMode parse_moe_mode(std::string_view text);

}  // namespace paratwin
