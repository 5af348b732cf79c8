#include "planner/progress.hpp"

#include <fmt/format.h>

#include <string>

namespace paratwin::plan {
namespace {

constexpr int kBarWidth = 30;
constexpr double kRedraw_s = 0.1;
constexpr double kPlainLineEvery_s = 30;

std::string clock_text(double seconds) {
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

Progress::Progress(std::ostream& out, bool terminal, std::int64_t total, std::int64_t already_done)
    : out_(out),
      terminal_(terminal),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_),
      first_done_(already_done) {}

std::string Progress::line(const ProgressCounts& c, double elapsed_s) const {
  const double fraction = total_ > 0 ? static_cast<double>(c.done) / static_cast<double>(total_) : 1.0;
  const std::int64_t done_here = c.done - first_done_;
  std::string eta = "ETA --:--";
  if (done_here > 0 && c.done < total_) {
    eta = "ETA " + clock_text(elapsed_s / static_cast<double>(done_here) * static_cast<double>(total_ - c.done));
  } else if (c.done >= total_) {
    eta = "done in " + clock_text(elapsed_s);
  }
  const std::string counts =
      fmt::format("{}/{} layouts ({} simulated, {} pruned, {} reused, {} resumed{})", c.done, total_, c.simulated,
                  c.pruned, c.reused, c.resumed, c.failed > 0 ? fmt::format(", {} failed", c.failed) : std::string());
  if (!terminal_) return fmt::format("plan: {:3.0f}% {}  {}", 100 * fraction, counts, eta);
  const auto filled = static_cast<int>(fraction * kBarWidth);
  return fmt::format("[{}{}] {:3.0f}% {}  {}", std::string(static_cast<std::size_t>(filled), '#'),
                     std::string(static_cast<std::size_t>(kBarWidth - filled), '.'), 100 * fraction, counts, eta);
}

void Progress::update(const ProgressCounts& c) {
  const auto now = std::chrono::steady_clock::now();
  const double since_draw_s = std::chrono::duration<double>(now - last_draw_).count();
  const double elapsed_s = std::chrono::duration<double>(now - start_).count();
  if (terminal_) {
    if (since_draw_s < kRedraw_s && c.done < total_) return;
    out_ << '\r' << line(c, elapsed_s) << "\x1b[K" << std::flush;
  } else {
    const std::int64_t decile = total_ > 0 ? c.done * 10 / total_ : 10;
    if (decile == last_decile_ && since_draw_s < kPlainLineEvery_s) return;
    last_decile_ = decile;
    last_printed_done_ = c.done;
    out_ << line(c, elapsed_s) << '\n' << std::flush;
  }
  last_draw_ = now;
}

void Progress::finish(const ProgressCounts& c) {
  const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (terminal_) {
    out_ << '\r' << line(c, elapsed_s) << "\x1b[K\n" << std::flush;
  } else if (c.done != last_printed_done_) {
    out_ << line(c, elapsed_s) << '\n' << std::flush;
  }
}

}  // namespace paratwin::plan
