#pragma once
/// --model and what to run on it: prompt length, batch, phase, CP algorithm and split, MoE mode, routing, memory.

#include <string>

#include "models/memory_model.hpp"
#include "models/model_spec.hpp"
#include "models/schedule_options.hpp"

namespace CLI {
class App;  // <CLI/CLI.hpp> in the .cpp files (see cli/command.hpp)
}

namespace paratwin::cli {

struct WorkloadFlags {
  std::string model = "deepseek-v3.2";
  std::string weight_dtype;  ///< "" = the model file's
  std::int64_t prompt_len = 0;
  int batch = 1;
  std::string phase = "prefill";
  std::string cp_algo = "allgather";
  std::string cp_split = "round-robin";
  std::string moe_mode;  ///< "" = a2a when ep > 1, else gather
  int layers = 0;
  int micro_batches = 0;
  std::string routing = "uniform";
  double zipf_exponent = 1.0;
  std::uint64_t seed = 1;
  std::string kv_cache_dtype = "bf16";
  double mem_fraction_static = 0.88;
};

/// Adds the workload flags. `layout_choices` false leaves out --cp-algo, --cp-split and --moe-mode, for commands
/// that choose them themselves (`paratwin plan` enumerates them).
void add_workload_flags(CLI::App& app, WorkloadFlags& flags, bool layout_choices = true);

/// The loaded model (throws paratwin::Error for an unknown model or bad file).
[[nodiscard]] ModelSpec load_workload_model(const WorkloadFlags& flags);
/// The schedule options (throws paratwin::Error naming the flag for bad values).
[[nodiscard]] ScheduleOptions schedule_options(const WorkloadFlags& flags);
/// The memory request matching the schedule: the same tokens, batch and MoE mode, dense FFN sharded as the builder
/// shards it (over attention TP).
[[nodiscard]] MemoryRequest memory_request(const WorkloadFlags& flags, const ParallelConfig& config, MoeMode moe_mode,
                                           double gpu_memory_bytes);

}  // namespace paratwin::cli
