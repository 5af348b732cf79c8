#include "topology/parallel_config.hpp"

#include <fmt/format.h>

#include "topology/error.hpp"

namespace paratwin {
namespace {

// The command-line flag of a ServerArgs field: "attn_cp_size" → "--attn-cp-size".
std::string flag_of(std::string_view key) {
  std::string flag = "--";
  for (const char ch : key) flag += ch == '_' ? '-' : ch;
  return flag;
}

}  // namespace

std::string ParallelConfig::to_flags() const {
  std::string flags = fmt::format("--tp-size {}", tp_size);
  if (pp_size != 1) flags += fmt::format(" --pp-size {}", pp_size);
  if (dp_size != 1) flags += fmt::format(" --dp-size {}", dp_size);
  if (enable_dp_attention) flags += " --enable-dp-attention";
  if (attn_cp_size != 1) flags += fmt::format(" --attn-cp-size {}", attn_cp_size);
  if (ep_size != 1) flags += fmt::format(" --ep-size {}", ep_size);
  if (moe_dp_size != 1) flags += fmt::format(" --moe-dp-size {}", moe_dp_size);
  return flags;
}

std::vector<std::string> structural_errors(const ParallelConfig& c) {
  std::vector<std::string> errors;
  const auto positive = [&](std::string_view flag, int value) {
    if (value < 1) errors.push_back(fmt::format("{} {} is invalid: every size must be at least 1", flag, value));
  };
  // Every size argument (the ints; enable_dp_attention is a switch).
  for_each_layout_argument(c, [&](std::string_view key, const auto& value) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, int>) positive(flag_of(key), value);
  });
  if (c.world_size && *c.world_size < 1) positive("--world-size", *c.world_size);
  if (!errors.empty()) return errors;

  // Products in 64 bits: flags up to INT_MAX must not overflow before they are judged.
  const auto world = static_cast<long long>(c.tp_size) * c.pp_size;
  const auto gpus = world * c.replicas();
  if (gpus > kMaxWorldSize) {
    errors.push_back(fmt::format(
        "--tp-size {} × --pp-size {}{} = {} ranks exceeds paratwin's limit of {} ranks", c.tp_size, c.pp_size,
        c.replicas() > 1 ? fmt::format(" × {} plain-DP replicas", c.replicas()) : "", gpus, kMaxWorldSize));
    return errors;
  }
  if (c.world_size && *c.world_size != world) {
    errors.push_back(
        fmt::format("--world-size {} does not equal --tp-size {} × --pp-size {} = {}: the world is tp × pp",
                    *c.world_size, c.tp_size, c.pp_size, world));
  }
  const long long attn_outer = static_cast<long long>(c.attn_dp_size()) * c.attn_cp_size;
  if (c.tp_size % attn_outer != 0) {
    errors.push_back(
        c.enable_dp_attention
            ? fmt::format("--tp-size {} is not divisible by --dp-size {} × --attn-cp-size {} = {}: attention factors "
                          "each stage as attn_dp × attn_cp × attn_tp",
                          c.tp_size, c.dp_size, c.attn_cp_size, attn_outer)
            : fmt::format("--tp-size {} is not divisible by --attn-cp-size {}: attention factors each stage as "
                          "attn_cp × attn_tp",
                          c.tp_size, c.attn_cp_size));
  }
  const long long moe_outer = static_cast<long long>(c.moe_dp_size) * c.ep_size;
  if (c.tp_size % moe_outer != 0) {
    errors.push_back(
        fmt::format("--tp-size {} is not divisible by --moe-dp-size {} × --ep-size {} = {}: MoE factors "
                    "each stage as moe_dp × ep × moe_tp",
                    c.tp_size, c.moe_dp_size, c.ep_size, moe_outer));
  }
  return errors;
}

void validate_structure(const ParallelConfig& config) {
  const auto errors = structural_errors(config);
  if (!errors.empty()) throw Error(errors.front());
}

}  // namespace paratwin
