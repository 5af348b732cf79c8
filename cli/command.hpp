#pragma once
/// What every subcommand shares: where it writes, and how it reports the action to run after parsing.

#include <functional>
#include <ostream>
#include <string>
#include <string_view>

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

/// Refuses, before a command does its work, an output file (`flag` its option, e.g. "--json") that could not be
/// written at the end: a path that is a directory, or whose folder is missing or not writable. An empty path (the
/// option not given) passes. A plan or a GPU run may take an hour; a typo in an output path must not waste it.
void check_output_path(std::string_view flag, const std::string& path);

}  // namespace paratwin::cli
