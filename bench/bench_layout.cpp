// Times RankLayout construction (groups + invariant checker) for growing worlds.
// Usage: bench_layout [max_world]   (default 65536)
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "topology/rank_layout.hpp"

int main(int argc, char** argv) {
  const int max_world = argc > 1 ? std::atoi(argv[1]) : 65536;
  fmt::print("{:>8} {:>6} {:>8} {:>8} {:>12}\n", "world", "pp", "tp", "attn_cp", "build_ms");
  for (int world = 64; world <= max_world; world *= 4) {
    paratwin::ParallelConfig c;
    c.pp_size = 4;
    c.tp_size = world / c.pp_size;
    c.attn_cp_size = 8;
    c.ep_size = c.tp_size / 8;
    c.moe_dp_size = 8;
    const auto start = std::chrono::steady_clock::now();
    const paratwin::RankLayout layout(c);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    fmt::print("{:>8} {:>6} {:>8} {:>8} {:>12.2f}\n", layout.world_size(), c.pp_size, c.tp_size, c.attn_cp_size, ms);
  }
  return 0;
}
