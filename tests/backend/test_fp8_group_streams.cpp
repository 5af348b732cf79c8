// The fp8 expert GEMMs' side-stream plan (fp8_group_streams.hpp): every group in exactly one run, and, under every
// order the streams and their signals allow, every row of Y written last by its own group although each group writes
// its rows rounded up to 4; runs balanced by rows where the groups are many.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda_plan/fp8_group_streams.hpp"

using namespace paratwin::cuda_plan;

namespace {

using i64 = std::int64_t;
constexpr i64 kMultiple = 4;

struct Placement {
  std::size_t run = 0;
  bool in_tail = false;
  i64 position = 0;  ///< order on the run's stream: the tail's groups, then the head's
};

// The rows owned by another group that a group writes without being ordered before that group's own GEMM: the
// plan's races (0 for a correct plan). Happens-before: earlier on the same stream, or a tail before the next run's
// head where that head waits for the signal.
i64 races(const std::vector<i64>& rows, const std::vector<Fp8StreamRun>& runs) {
  const auto groups = static_cast<i64>(rows.size());
  std::vector<Placement> at(rows.size());
  std::vector<i64> offsets{0}, owner;
  for (std::size_t g = 0; g < rows.size(); ++g) {
    offsets.push_back(offsets.back() + rows[g]);
    owner.insert(owner.end(), static_cast<std::size_t>(rows[g]), static_cast<i64>(g));
  }
  for (std::size_t i = 0; i < runs.size(); ++i) {
    i64 position = 0;
    for (i64 g = runs[i].tail; g < runs[i].end; ++g) at[static_cast<std::size_t>(g)] = {i, true, position++};
    for (i64 g = runs[i].first; g < runs[i].tail; ++g) at[static_cast<std::size_t>(g)] = {i, false, position++};
  }
  const auto before = [&](i64 a, i64 b) {
    const auto& pa = at[static_cast<std::size_t>(a)];
    const auto& pb = at[static_cast<std::size_t>(b)];
    if (pa.run == pb.run) return pa.position < pb.position;
    return pb.run == pa.run + 1 && pa.in_tail && !pb.in_tail && runs[pb.run].waits_for_previous;
  };
  i64 bad = 0;
  for (i64 g = 0; g < groups; ++g) {
    const i64 r = rows[static_cast<std::size_t>(g)];
    const i64 end = offsets[static_cast<std::size_t>(g)] + (r + kMultiple - 1) / kMultiple * kMultiple;
    for (i64 row = offsets[static_cast<std::size_t>(g) + 1]; row < std::min(end, offsets.back()); ++row) {
      if (!before(g, owner[static_cast<std::size_t>(row)])) ++bad;
    }
  }
  return bad;
}

void check_plan(const std::vector<i64>& rows, int streams) {
  CAPTURE(rows, streams);
  const auto runs = plan_fp8_group_streams(rows, streams, kMultiple);
  REQUIRE(!runs.empty());
  REQUIRE(static_cast<int>(runs.size()) <= streams);
  i64 next = 0;
  for (const auto& run : runs) {
    CHECK(run.first == next);
    CHECK(run.first <= run.tail);
    CHECK(run.tail <= run.end);
    CHECK(run.first < run.end);
    next = run.end;
  }
  CHECK(next == static_cast<i64>(rows.size()));
  CHECK(!runs.front().waits_for_previous);
  CHECK(!runs.back().has_tail());
  CHECK(races(rows, runs) == 0);
}

}  // namespace

TEST_CASE("fp8 expert streams: the race check finds the race of runs without ordered tails", "[cuda_plan]") {
  // 5 rows run as 8: group 0 writes 3 rows of group 1, which another stream runs unordered.
  const std::vector<i64> rows{5, 7};
  CHECK(races(rows, {{0, 1, 1, false}, {1, 2, 2, false}}) == 3);
  CHECK(races(rows, {{0, 0, 1, false}, {1, 2, 2, true}}) == 0);   // tail first, head waits
  CHECK(races(rows, {{0, 0, 1, false}, {1, 2, 2, false}}) == 3);  // no wait
  const auto runs = plan_fp8_group_streams(rows, 2, kMultiple);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].tail == 0);
  CHECK(runs[1].waits_for_previous);
}

TEST_CASE("fp8 expert streams: ragged groups, empty groups and tiny runs are race-free", "[cuda_plan]") {
  check_plan({0}, 4);
  check_plan({3}, 4);
  check_plan({0, 0, 1, 0, 2}, 4);
  check_plan({4, 4, 4, 4}, 4);        // multiples of 4: no tails
  check_plan({1, 1, 1, 1, 1, 1}, 3);  // every group writes into the next ones
  check_plan({5, 1, 0, 1, 9, 2, 0, 3, 6}, 4);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> kind(0, 3), small(0, 5), large(1, 300), count(1, 40), streams(1, 6);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<i64> rows(static_cast<std::size_t>(count(rng)));
    for (auto& r : rows) r = kind(rng) == 0 ? 0 : kind(rng) == 1 ? small(rng) : large(rng);
    check_plan(rows, streams(rng));
  }
}

TEST_CASE("fp8 expert streams: 256 experts of ~256 rows share 4 streams evenly", "[cuda_plan]") {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<i64> rows_of(200, 312);
  std::vector<i64> rows(256);
  i64 total = 0;
  for (auto& r : rows) total += (r = rows_of(rng));
  check_plan(rows, 4);
  const auto runs = plan_fp8_group_streams(rows, 4, kMultiple);
  REQUIRE(runs.size() == 4);
  for (const auto& run : runs) {
    i64 run_rows = 0, tail_rows = 0;
    for (i64 g = run.first; g < run.end; ++g) run_rows += rows[static_cast<std::size_t>(g)];
    for (i64 g = run.tail; g < run.end; ++g) tail_rows += rows[static_cast<std::size_t>(g)];
    CHECK(std::abs(run_rows - total / 4) <= 312 / 2 + 1);  // the nearest group boundary to a quarter
    CHECK(tail_rows <= run_rows / 4);
  }
}
