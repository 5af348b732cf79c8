#include "backend/cuda_plan/fp8_group_streams.hpp"

#include <cstdlib>

#include "topology/error.hpp"

namespace paratwin::cuda_plan {

namespace {

using i64 = std::int64_t;

struct Rows {
  const std::vector<i64>& rows;
  std::vector<i64> offsets;  ///< per group, then the total
  i64 multiple = 1;

  [[nodiscard]] i64 write_end(i64 g) const {
    const i64 r = rows[static_cast<std::size_t>(g)];
    return offsets[static_cast<std::size_t>(g)] + (r + multiple - 1) / multiple * multiple;
  }
  [[nodiscard]] i64 start(i64 g) const { return offsets[static_cast<std::size_t>(g)]; }

  /// The first group of the smallest suffix of [first, end) that no group before it writes into.
  [[nodiscard]] i64 tail_start(i64 first, i64 end) const {
    i64 s = end;
    for (;;) {
      i64 p = s - 1;  // the last non-empty group before s (only those write)
      while (p >= first && rows[static_cast<std::size_t>(p)] == 0) --p;
      if (p < first || write_end(p) <= start(s)) return s;
      s = p;  // p writes into the suffix: it joins it
    }
  }

  /// The last row + 1 a run of groups writes (its first row where it writes none).
  [[nodiscard]] i64 writes_to(i64 first, i64 end) const {
    i64 last = start(first);
    for (i64 g = first; g < end; ++g) {
      if (rows[static_cast<std::size_t>(g)] > 0 && write_end(g) > last) last = write_end(g);
    }
    return last;
  }
};

}  // namespace

std::vector<Fp8StreamRun> plan_fp8_group_streams(const std::vector<i64>& group_rows, int streams, i64 row_multiple) {
  PARATWIN_ASSERT(streams >= 1 && row_multiple >= 1, "{} streams, row multiple {}", streams, row_multiple);
  const auto groups = static_cast<i64>(group_rows.size());
  if (groups == 0) return {};
  Rows r{group_rows, {0}, row_multiple};
  for (const i64 n : group_rows) {
    PARATWIN_ASSERT(n >= 0, "a group of {} rows", n);
    r.offsets.push_back(r.offsets.back() + n);
  }
  const i64 total = r.offsets.back();

  // Run boundaries: the group boundary nearest to each stream's share of the rows, dropping repeats.
  std::vector<i64> bounds{0};
  for (int s = 1; s < streams; ++s) {
    const i64 target = total * s / streams;
    i64 g = bounds.back();
    while (g < groups && r.offsets[static_cast<std::size_t>(g + 1)] <= target) ++g;
    if (g < groups && std::llabs(r.offsets[static_cast<std::size_t>(g + 1)] - target) < std::llabs(r.start(g) - target))
      ++g;
    if (r.start(g) > r.start(bounds.back()) && g < groups) bounds.push_back(g);
  }
  bounds.push_back(groups);

  // Tails; where a tail's overflow reaches past the next run's head, the next run merges into this one and every
  // tail is planned again (a merged run's tail can start earlier than either run's did).
  std::vector<Fp8StreamRun> runs;
  for (std::size_t b = 0; b + 1 < bounds.size(); ++b) runs.push_back({bounds[b], bounds[b + 1], bounds[b + 1], false});
  for (bool merged = true; merged;) {
    merged = false;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      // The last run writes past its end into spare rows: it needs no tail.
      runs[i].tail = i + 1 == runs.size() ? runs[i].end : r.tail_start(runs[i].first, runs[i].end);
    }
    for (std::size_t i = 0; i + 1 < runs.size(); ++i) {
      if (runs[i].has_tail() && r.writes_to(runs[i].tail, runs[i].end) > r.start(runs[i + 1].tail)) {
        runs[i].end = runs[i + 1].end;
        runs.erase(runs.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        merged = true;
        break;
      }
    }
  }
  for (std::size_t i = 1; i < runs.size(); ++i) runs[i].waits_for_previous = runs[i - 1].has_tail();
  return runs;
}

}  // namespace paratwin::cuda_plan
