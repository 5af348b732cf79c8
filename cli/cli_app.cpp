#include "cli/cli_app.hpp"

#include <CLI/CLI.hpp>
#include <exception>

#include "cli/commands.hpp"
#include "cli/mpi_world.hpp"
#include "topology/error.hpp"

namespace paratwin::cli {

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"paratwin: plan, simulate, run and compare context-parallel LLM inference layouts", "paratwin"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "paratwin 0.1.0");
  Action action;
  const Io io{out, err};
  add_layout_command(app, action, io);
  add_schedule_command(app, action, io);
  add_run_command(app, action, io);
  add_bench_command(app, action, io);
  add_compare_command(app, action, io);
#ifdef PARATWIN_HAVE_SIM
  add_sim_command(app, action, io);
  add_calibrate_command(app, action, io);
  add_plan_command(app, action, io);
#endif

  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  int code = kExitUserError;
  try {
    return action ? action() : 0;
  } catch (const Error& e) {
    err << "paratwin: error: " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    err << "paratwin: error: out of memory: the requested configuration is too large for this machine\n";
  } catch (const std::exception& e) {
    err << "paratwin: internal error (please report): " << e.what() << "\n";
    code = kExitInternalError;
  }
  // Under mpirun, the other processes may wait in a collective for this one: end them all now.
  err.flush();
  MpiWorld::get().abort_job(code);
  return code;
}

}  // namespace paratwin::cli
