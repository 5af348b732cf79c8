#pragma once
/// SGLang's parallelism flags, spelled as SGLang's server arguments, shared by every subcommand.

#include <string>
#include <vector>

#include "topology/parallel_config.hpp"
#include "topology/sglang_rules.hpp"

namespace CLI {
class App;  // <CLI/CLI.hpp> in the .cpp files (see cli/command.hpp)
}

namespace paratwin::cli {

/// Values of the parallelism flags as parsed.
struct ParallelFlags {
  ParallelConfig config;
  int world_size = 0;  ///< 0: not given
  bool strict_sglang = false;
  std::string sglang_version = "17213";
  std::string moe_dp_rule = "merged";
};

/// Adds --tp-size/--tp, --pp-size, --dp-size/--dp, --enable-dp-attention, --attn-cp-size, --ep-size/--ep,
/// --moe-dp-size, --world-size, --moe-dp-rule, --sglang-version and --strict-sglang to `app`.
void add_parallel_flags(CLI::App& app, ParallelFlags& flags);

/// The configuration with structural validation done (throws paratwin::Error), plus the SGLang-rule warnings.
/// Under --strict-sglang a rule the chosen --sglang-version enforces throws paratwin::Error instead.
struct CheckedConfig {
  ParallelConfig config;
  std::vector<std::string> warnings;
};
[[nodiscard]] CheckedConfig check_parallel_flags(const ParallelFlags& flags);

}  // namespace paratwin::cli
