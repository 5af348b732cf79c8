#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "cli/mpi_world.hpp"
#include "planner/progress.hpp"

using namespace paratwin;

TEST_CASE("progress redraws a bar with an ETA on a terminal and prints plain lines otherwise", "[planner][progress]") {
  plan::ProgressCounts counts;
  std::ostringstream terminal_out;
  plan::Progress terminal(terminal_out, /*terminal=*/true, 10, 0);
  counts.done = 10;
  counts.simulated = 7;
  counts.pruned = 3;
  terminal.update(counts);
  terminal.finish(counts);
  const auto bar = terminal_out.str();
  CHECK(bar.find('\r') != std::string::npos);
  CHECK(bar.find("[##############################]") != std::string::npos);
  CHECK(bar.find("10/10 layouts (7 simulated, 3 pruned") != std::string::npos);
  CHECK(bar.find("done in") != std::string::npos);

  std::ostringstream log_out;
  plan::Progress log(log_out, /*terminal=*/false, 100, 20);  // 20 answered by a resumed file
  for (int done = 21; done <= 100; ++done) {
    counts.done = done;
    log.update(counts);
  }
  log.finish(counts);
  const auto lines = log_out.str();
  CHECK(lines.find('\r') == std::string::npos);
  CHECK(lines.find("plan:  30% 30/100") != std::string::npos);
  CHECK(lines.find("ETA") != std::string::npos);
  // One line per 10 % reached, and no second line for 100 %.
  CHECK(std::count(lines.begin(), lines.end(), '\n') == 9);
}

TEST_CASE("outside mpirun the MPI world is this process alone", "[planner][mpi]") {
  const auto& world = cli::MpiWorld::get();
  CHECK(!world.active());
  CHECK(world.rank() == 0);
  CHECK(world.size() == 1);
  CHECK(world.broadcast("nccl-unique-id") == "nccl-unique-id");
  CHECK(world.gather("mine") == std::vector<std::string>{"mine"});
  CHECK(world.all_gather(std::string("a\0b", 3)) == std::vector<std::string>{std::string("a\0b", 3)});
  world.barrier();
}
