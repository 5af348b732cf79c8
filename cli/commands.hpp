#pragma once
/// Registration of each subcommand. Every add_*_command adds a subcommand to `root` whose parse callback sets
/// `action` to the work to run.

#include "cli/command.hpp"

namespace paratwin::cli {

void add_layout_command(CLI::App& root, Action& action, Io io);
void add_schedule_command(CLI::App& root, Action& action, Io io);
void add_run_command(CLI::App& root, Action& action, Io io);
void add_bench_command(CLI::App& root, Action& action, Io io);
void add_compare_command(CLI::App& root, Action& action, Io io);
#ifdef PARATWIN_HAVE_SIM
void add_sim_command(CLI::App& root, Action& action, Io io);
void add_calibrate_command(CLI::App& root, Action& action, Io io);
void add_plan_command(CLI::App& root, Action& action, Io io);
#endif

}  // namespace paratwin::cli
