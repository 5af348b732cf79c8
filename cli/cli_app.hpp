#pragma once
/// The `paratwin` command as a library function, so tests drive it in-process.

#include <ostream>
#include <string>
#include <vector>

namespace paratwin::cli {

/// Runs paratwin with `args` (args[0] is the program name), writing to `out` and `err`; returns the exit code.
/// Never throws: every error becomes one message on `err` and a non-zero code.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace paratwin::cli
