// The simulator's speed on the yardstick: DeepSeek-V3.2, 128K-token prefill, all 61 layers, full simulation,
// on 32, 256 and 1024 H200 GPUs (nodes of 8). Prints, per size: schedule build time, simulation wall time, peak
// memory (this process and the forked SimGrid child) and the simulated TTFT.
// Usage: bench_sim [max_gpus]   (default 1024)
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>

#include "models/model_spec.hpp"
#include "models/schedule_builder.hpp"
#include "sim/sim_backend.hpp"
#include "topology/cluster.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_rss_mib(int who) {
  rusage usage{};
  getrusage(who, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// The demo's shape, scaled: DP-attention replicas of 8 CP ranks (one per node), DeepEP over all of a stage's ranks,
// and PP stages beyond 256 GPUs (DeepSeek-V3.2 has 256 experts, so EP stops at 256).
paratwin::ParallelConfig layout_for(int gpus) {
  paratwin::ParallelConfig c;
  c.pp_size = gpus > 256 ? gpus / 256 : 1;
  c.tp_size = gpus / c.pp_size;
  c.enable_dp_attention = true;
  c.attn_cp_size = 8;
  c.dp_size = c.tp_size / 8;
  c.ep_size = c.tp_size;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const int max_gpus = argc > 1 ? std::atoi(argv[1]) : 1024;
  const auto model = paratwin::load_model("deepseek-v3.2");
  fmt::print("{:>6} {:>5} {:>8} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12}\n", "gpus", "pp", "ops", "build_s",
             "sim_s", "fast_s", "parent_MiB", "child_MiB", "ttft_s", "fast_ttft_s");
  for (int gpus = 32; gpus <= max_gpus; gpus *= gpus == 32 ? 8 : 4) {
    const auto config = layout_for(gpus);
    paratwin::ScheduleOptions options;
    options.prompt_tokens = 131072;
    options.batch = config.attn_dp_size();  // one 128K request per DP replica
    auto start = std::chrono::steady_clock::now();
    const auto schedule = paratwin::build_schedule(model, config, options);
    const double build_s = seconds_since(start);
    std::int64_t ops = 0;
    for (const auto& r : schedule.ranks) ops += static_cast<std::int64_t>(r.size());
    const paratwin::RankLayout layout(config);
    const paratwin::Placement placement(layout, paratwin::load_cluster("h200-sxm", gpus / 8));
    paratwin::SimOptions sim;
    start = std::chrono::steady_clock::now();
    const auto full = paratwin::simulate(schedule, placement, sim);
    const double sim_s = seconds_since(start);
    sim.fast = true;
    start = std::chrono::steady_clock::now();
    const auto fast = paratwin::simulate(schedule, placement, sim);
    const double fast_s = seconds_since(start);
    fmt::print("{:>6} {:>5} {:>8} {:>10.2f} {:>10.2f} {:>10.2f} {:>12.0f} {:>12.0f} {:>10.4f} {:>12.4f}\n", gpus,
               config.pp_size, ops, build_s, sim_s, fast_s, peak_rss_mib(RUSAGE_SELF), peak_rss_mib(RUSAGE_CHILDREN),
               full.summary.end_to_end_s, fast.summary.end_to_end_s);
  }
  return 0;
}
