#include "traces/collective_bandwidth.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "topology/error.hpp"

namespace paratwin {

bool is_communication_kind(std::string_view kind) {
  constexpr std::array<std::string_view, 7> kKinds = {"all_gather", "reduce_scatter", "all_reduce", "all_to_all",
                                                      "broadcast",  "send",           "recv"};
  for (const std::string_view k : kKinds) {
    if (k == kind) return true;
  }
  return false;
}

double nccl_tests_size_bytes(const Event& event) {
  PARATWIN_ASSERT(is_communication_kind(event.kind), "'{}' is not a communication kind", event.kind);
  const auto bytes = static_cast<double>(event.bytes);
  if (event.kind == "all_gather" || event.kind == "reduce_scatter") return bytes * std::max(event.group_size, 1);
  return bytes;
}

double bus_bandwidth_factor(std::string_view kind, int group_size) {
  PARATWIN_ASSERT(is_communication_kind(kind), "'{}' is not a communication kind", std::string(kind));
  if (group_size <= 1) return kind == "send" || kind == "recv" || kind == "broadcast" ? 1.0 : 0.0;
  const double n = group_size;
  if (kind == "all_reduce") return 2.0 * (n - 1.0) / n;
  if (kind == "all_gather" || kind == "reduce_scatter" || kind == "all_to_all") return (n - 1.0) / n;
  return 1.0;  // broadcast, send, recv
}

Bandwidth nccl_tests_bandwidth(const Event& event, double duration_s) {
  if (duration_s <= 0) return {};
  const double algbw = nccl_tests_size_bytes(event) / duration_s;
  return {algbw, algbw * bus_bandwidth_factor(event.kind, event.group_size)};
}

}  // namespace paratwin
