#pragma once
// Runs the paratwin command in-process and captures its output.

#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_app.hpp"

namespace paratwin::test {

struct CliResult {
  int exit_code = 0;
  std::string out, err;
};

inline CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "paratwin");
  std::ostringstream out, err;
  CliResult result;
  result.exit_code = cli::run(args, out, err);
  result.out = out.str();
  result.err = err.str();
  return result;
}

}  // namespace paratwin::test
