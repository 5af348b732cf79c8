// `paratwin run`: builds the schedule and executes it on the GPUs with the CUDA/NCCL backend, or checks its numerics
// against a single-GPU reference (--check). One process drives a node's GPUs; under `mpirun -np N` the N processes
// share the ranks (one per node or one per GPU) and process 0 reports. Built without CUDA, it says so.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "backend/moe_gemm_choice.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/commands.hpp"
#include "cli/mpi_world.hpp"
#include "cli/parallel_flags.hpp"
#include "cli/workload_flags.hpp"
#include "models/schedule_builder.hpp"
#include "models/schedule_checks.hpp"
#include "topology/error.hpp"
#include "traces/trace.hpp"
#ifdef PARATWIN_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#include "topology/placement.hpp"
#endif

namespace paratwin::cli {
namespace {

struct RunCommandOptions {
  ParallelFlags parallel;
  ClusterFlags cluster;
  WorkloadFlags workload;
  std::string trace;
  bool check = false;
  double timeout_s = 300;
  int warmup = 2;
  int steps = 5;
  std::string instrumentation = "both";
  std::string moe_gemm = "auto";
};

MoeGemmChoice checked_moe_gemm(const std::string& name) {
  if (const auto choice = parse_moe_gemm_choice(name)) return *choice;
  fail("--moe-gemm '{}' is unknown: use {}", name, fmt::join(kMoeGemmChoiceNames, ", "));
}

int run_run(const RunCommandOptions& o, Io io) {
  const auto checked = check_parallel_flags(o.parallel);
  const auto& config = checked.config;
  const auto model = load_workload_model(o.workload);
  const auto options = schedule_options(o.workload);
  if (o.instrumentation != "both" && o.instrumentation != "per-op" && o.instrumentation != "light") {
    fail("--instrumentation '{}' is unknown: use per-op, light or both", o.instrumentation);
  }
  const auto moe_gemm = checked_moe_gemm(o.moe_gemm);
  const auto schedule = build_schedule(model, config, options);
  if (const auto violations = schedule_violations(schedule); !violations.empty()) {
    throw InternalError("paratwin built an inconsistent schedule: " + violations.front());
  }
#ifdef PARATWIN_HAVE_CUDA
  CudaOptions cuda;
  cuda.warmup_steps = o.warmup;
  cuda.measured_steps = o.steps;
  cuda.timeout_s = o.timeout_s;
  cuda.seed = o.workload.seed;
  cuda.moe_gemm = moe_gemm;
  cuda.model = model;
  MpiWorld& processes = MpiWorld::get();
  if (processes.size() > 1) cuda.processes = &processes;
  const bool reporter = processes.rank() == 0;  // the other processes print and write nothing
  if (reporter) check_output_path("--trace", o.trace);
  if (o.check) {
    auto ref_options = options;
    ref_options.micro_batches = 0;
    const auto reference = build_schedule(model, ParallelConfig{}, ref_options);
    const auto r = check_cuda(schedule, reference, cuda);
    if (!reporter) return r.passed ? 0 : 1;
    io.out << fmt::format(
        "paratwin run --check: {} {} ({} tokens, {} layers)\n  final hidden states: relative L2 error {:.3e}\n  "
        "last-token logits:   relative L2 error {:.3e}\n  tolerance {:.0e}: {}\n  {}\n",
        model.name, config.to_flags(), options.prompt_tokens, schedule.meta.layers, r.hidden_rel_l2, r.logits_rel_l2,
        r.tolerance, r.passed ? "PASSED" : "FAILED", r.detail);
    return r.passed ? 0 : 1;
  }
  const auto cluster = load_cluster_for(o.cluster, config.world());
  const RankLayout layout(config);
  const Placement placement(layout, cluster);
  std::string s = fmt::format("paratwin run: {} {} of {} token(s), {} layers on {} GPU(s) in {} process(es); {}\n",
                              model.name, config.to_flags(), options.prompt_tokens, schedule.meta.layers,
                              config.world(), processes.size(), cuda_versions());
  double light_s = 0;
  if (o.instrumentation != "per-op") {
    cuda.per_op_events = false;
    light_s = run_cuda(schedule, placement, cuda).stats.median_step_s;
    s += fmt::format("  light instrumentation (step events): median step {:.3f} ms over {} steps\n", light_s * 1e3,
                     o.steps);
  }
  if (o.instrumentation != "light") {
    cuda.per_op_events = true;
    auto result = run_cuda(schedule, placement, cuda);
    const auto& st = result.stats;
    s += fmt::format("  per-op events: median step {:.3f} ms over {} steps (after {} warm-up)", st.median_step_s * 1e3,
                     o.steps, o.warmup);
    if (light_s > 0) s += fmt::format("; per-op event overhead {:+.2f} %", (st.median_step_s / light_s - 1) * 100);
    s += fmt::format("\n  device memory per rank {:.2f} GiB; {} op(s) of rank 0 run on scratch data\n",
                     static_cast<double>(st.device_bytes_per_rank) / 1073741824.0, st.generic_ops.size());
    s += fmt::format("  attention calls of rank 0 per step: {}\n", attention_paths_summary(st));
    s += fmt::format("  MoE expert GEMMs of rank 0 per step (--moe-gemm {}): {}\n", o.moe_gemm, moe_gemm_summary(st));
    for (const auto& why : st.moe_gemm_fallbacks) s += "  note: --moe-gemm " + o.moe_gemm + ": " + why + "\n";
    if (st.indexer_ops_fp8 + st.indexer_ops_bf16 > 0) {
      s += fmt::format("  DSA indexer ops of rank 0 per step: {}\n", indexer_summary(st));
    }
    for (const auto& why : st.indexer_fallbacks) s += fmt::format("  note: {}\n", why);
    if (!o.trace.empty() && reporter) {
      result.trace.meta.cluster = fmt::format("{} ({} × {})", cluster.name, cluster.nodes, cluster.gpus_per_node);
      write_chrome_trace_file(result.trace, o.trace);
      s += fmt::format("  wrote {} ({} events)\n", o.trace, result.trace.events.size());
    }
  }
  for (const auto& w : checked.warnings) s += "  warning: " + w + "\n";
  if (reporter) io.out << s;
  return 0;
#else
  (void)io;
  (void)moe_gemm;
  fail(
      "paratwin was built without CUDA: `paratwin run` needs the CUDA/NCCL backend (configure with "
      "-DPARATWIN_ENABLE_CUDA=ON where nvcc and NCCL are installed); the schedule itself builds ({} rank{})",
      schedule.ranks.size(), schedule.ranks.size() == 1 ? "" : "s");
#endif
}

}  // namespace

void add_run_command(CLI::App& root, Action& action, Io io) {
  auto options = std::make_shared<RunCommandOptions>();
  auto* cmd = root.add_subcommand(
      "run",
      "Execute the schedule on the local GPUs with the CUDA/NCCL backend (real kernels on the real shapes, seeded "
      "random weights), time every op with CUDA events, or check the numerics against one GPU (--check)");
  add_parallel_flags(*cmd, options->parallel);
  add_workload_flags(*cmd, options->workload);
  add_cluster_flags(*cmd, options->cluster);
  cmd->add_option("--trace", options->trace, "Write the measured trace (Chrome JSON, the project's schema)")
      ->group("Output");
  cmd->add_flag("--check", options->check,
                "Compare the final hidden states and logits with a single-GPU reference (relative L2 ≤ 1e-2)")
      ->group("Run");
  cmd->add_option("--timeout", options->timeout_s,
                  "Watchdog: abort every communicator after this many seconds "
                  "without a finished step")
      ->capture_default_str()
      ->group("Run");
  cmd->add_option("--warmup", options->warmup, "Warm-up steps (not measured)")->capture_default_str()->group("Run");
  cmd->add_option("--steps", options->steps, "Measured steps (the median is reported)")
      ->capture_default_str()
      ->group("Run");
  cmd->add_option("--instrumentation", options->instrumentation,
                  "per-op (events around every op), light (events at step boundaries) or both (to report the "
                  "per-op overhead)")
      ->capture_default_str()
      ->group("Run");
  cmd->add_option("--moe-gemm", options->moe_gemm,
                  "MoE expert GEMMs: auto (a rule of the experts' rows, n, k and the GPU: the kernel on sm_90 for "
                  "128-768 rows per expert and n <= 4096, else cuBLAS streams; fp8 experts: the fp8 kernel for "
                  "128-640 rows per expert, else cuBLASLt streams), cublas-streams (one cuBLAS or "
                  "cuBLASLt GEMM per expert on 4 side streams) or hopper-kernel (the backend's persistent sm_90 "
                  "kernel, bf16 or fp8; cuBLAS streams where it cannot run, which the run reports)")
      ->capture_default_str()
      ->group("Run");
  cmd->callback([options, &action, io] { action = [options, io] { return run_run(*options, io); }; });
}

}  // namespace paratwin::cli
