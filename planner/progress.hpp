#pragma once
/// Progress of a plan on stderr: a redrawn bar with an ETA on a terminal, plain lines otherwise (logs, CI, pipes).

#include <chrono>
#include <cstdint>
#include <ostream>

namespace paratwin::plan {

/// Counts shown by the progress display.
struct ProgressCounts {
  std::int64_t done = 0;       ///< layouts finished (simulated, pruned, failed, or taken from the resumed file)
  std::int64_t simulated = 0;  ///< simulated in this run
  std::int64_t pruned = 0;
  std::int64_t reused = 0;   ///< answered by another layout with the same simulation key
  std::int64_t resumed = 0;  ///< answered by the resumed results file
  std::int64_t failed = 0;
};

class Progress {
 public:
  /// `terminal`: redraw one line with '\r' (at most 10 times a second); else print a line at every 10 % and at
  /// least every 30 s. `total`: layouts to finish; `already_done`: those a resumed file answered (not timed).
  Progress(std::ostream& out, bool terminal, std::int64_t total, std::int64_t already_done);
  /// Reports the new counts; the ETA extrapolates the time per layout finished in this run.
  void update(const ProgressCounts& counts);
  /// Ends the display (newline on a terminal) with a final line.
  void finish(const ProgressCounts& counts);

 private:
  [[nodiscard]] std::string line(const ProgressCounts& counts, double elapsed_s) const;

  std::ostream& out_;
  bool terminal_;
  std::int64_t total_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::int64_t first_done_ = 0;  ///< done count when this run started (resumed layouts do not count for the ETA)
  std::int64_t last_decile_ = -1;
  std::int64_t last_printed_done_ = -1;  ///< plain lines: the count of the last line printed
};

}  // namespace paratwin::plan
