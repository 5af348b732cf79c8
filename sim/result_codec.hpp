#pragma once
/// Binary encoding of a SimResult, to carry it from the forked simulation process back to the caller. Internal.

#include <string>

#include "sim/sim_backend.hpp"

namespace paratwin::sim {

[[nodiscard]] std::string encode_result(const SimResult& result);
/// Throws paratwin::InternalError on truncated or malformed input.
[[nodiscard]] SimResult decode_result(const std::string& bytes);

}  // namespace paratwin::sim
