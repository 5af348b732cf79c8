// Run under `mpirun -np 2` (ctest: cli/mpirun-process-group): what `mpirun paratwin run` needs from MpiWorld as the
// CUDA backend's ProcessGroup, without GPUs. Process 0's bytes reach every process, a split barrier completes only
// once every process started it, and the ranks' results of all processes arrive intact. Exit 0 when all hold.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>

#include "backend/cuda_plan/rank_results.hpp"
#include "cli/mpi_world.hpp"

using namespace paratwin;

namespace {

int failed(const std::string& what) {
  std::fprintf(stderr, "mpi_process_group_probe: %s\n", what.c_str());
  return 1;
}

int probe() {
  auto& world = cli::MpiWorld::get();
  if (world.process_count() != 2) {
    return failed(fmt::format("run me under mpirun -np 2 (got {} process(es); built with MPI: {})",
                              world.process_count(), cli::MpiWorld::built_with_mpi()));
  }
  const int me = world.process_index();
  // The NCCL unique id travels like this: process 0's bytes, everyone else sends none.
  const auto ids = world.exchange(me == 0 ? std::string("\0uid\xff", 5) : std::string());
  if (ids.size() != 2 || ids[0] != std::string("\0uid\xff", 5) || !ids[1].empty()) return failed("exchange");

  // Process 1 starts the barrier late: process 0's barrier must not complete before that.
  if (me == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  world.start_barrier();
  while (!world.barrier_done()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  const double waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (me == 0 && waited_s < 0.2)
    return failed(fmt::format("the barrier completed after {:.3f} s, before process 1 came", waited_s));

  // Each process's block of 4 ranks' results reaches both.
  std::vector<cuda_plan::RankResults> mine;
  for (const int r : cuda_plan::process_ranks(4, me, 2)) {
    cuda_plan::RankResults res;
    res.rank = r;
    res.step_s = {0.001 * (r + 1)};
    res.outputs.hidden = std::vector<float>(static_cast<std::size_t>(1000 * (r + 1)), static_cast<float>(r));
    mine.push_back(std::move(res));
  }
  int seen = 0;
  for (const auto& bytes : world.exchange(cuda_plan::encode_rank_results(mine))) {
    for (const auto& res : cuda_plan::decode_rank_results(bytes)) {
      if (res.step_s != std::vector<double>{0.001 * (res.rank + 1)} ||
          res.outputs.hidden.size() != static_cast<std::size_t>(1000 * (res.rank + 1)))
        return failed(fmt::format("rank {}'s results changed on the way", res.rank));
      seen |= 1 << res.rank;
    }
  }
  if (seen != 0xf) return failed(fmt::format("ranks seen: mask {:#x}, want 0xf", seen));
  if (me == 0)
    std::printf("process group over MPI: exchange, split barrier (waited %.3f s), rank results: ok\n", waited_s);
  return 0;
}

}  // namespace

int main() {
  try {
    return probe();
  } catch (const std::exception& e) {
    return failed(e.what());
  }
}
