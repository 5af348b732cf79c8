#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>

#include "planner/process_pool.hpp"
#include "topology/error.hpp"

using namespace paratwin::plan;

TEST_CASE("the pool runs every task in a child process and hands back each answer", "[planner][pool]") {
  ProcessPool pool(3);
  std::map<std::size_t, TaskAnswer> answers;
  const auto parent = ::getpid();
  const bool finished = pool.run(
      10,
      [parent](std::size_t i) {
        if (i == 7) throw std::runtime_error("task seven failed");
        return std::to_string(i * i) + (::getpid() != parent ? " in a child" : " in the parent");
      },
      [&](std::size_t i, TaskAnswer answer) { answers[i] = std::move(answer); }, [] { return false; });
  CHECK(finished);
  REQUIRE(answers.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    if (i == 7) continue;
    CHECK(answers[i].ok);
    CHECK(answers[i].text == std::to_string(i * i) + " in a child");
  }
  CHECK(!answers[7].ok);
  CHECK(answers[7].text == "task seven failed");
}

TEST_CASE("stopping the pool kills the children in flight and starts no more", "[planner][pool]") {
  ProcessPool pool(2);
  int finished_tasks = 0;
  const auto start = std::chrono::steady_clock::now();
  const bool finished = pool.run(
      6,
      [](std::size_t) {
        ::sleep(30);
        return std::string("slept");
      },
      [&](std::size_t, TaskAnswer) { ++finished_tasks; },
      [&] { return std::chrono::steady_clock::now() - start > std::chrono::milliseconds(300); });
  CHECK(!finished);
  CHECK(finished_tasks == 0);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a pool needs at least one worker", "[planner][pool]") {
  CHECK_THROWS_AS(ProcessPool(0), paratwin::Error);
  CHECK(online_cores() >= 1);
}
