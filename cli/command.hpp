#pragma once
/// What every subcommand shares: where it writes, and how it reports the action to run after parsing.

#include <functional>
#include <ostream>
#include <string>

// CLI11 is the slowest header of the build (~10 s per file at -O2): headers only name its App, and the .cpp files
// that build commands include <CLI/CLI.hpp> themselves.
namespace CLI {
class App;
}

namespace paratwin::cli {

struct Io {
  std::ostream& out;
  std::ostream& err;
};

/// Set by a subcommand's parse callback; run by cli::run after parsing succeeded. Returns the exit code.
using Action = std::function<int()>;

/// Exit codes: user errors (bad flags, files, sizes, impossible layouts) exit with kExitUserError; CLI11's own parse
/// errors keep CLI11's codes (all non-zero); a paratwin bug exits with kExitInternalError.
inline constexpr int kExitUserError = 2;
/// `paratwin compare --tolerance X`: the report was printed, and an error exceeds X.
inline constexpr int kExitToleranceExceeded = 3;
inline constexpr int kExitInternalError = 70;

/// Writes `text` to `path` through a temporary file in the same folder and a rename, so that a failure leaves
/// no half-written file. Throws paratwin::Error naming the path.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace paratwin::cli
