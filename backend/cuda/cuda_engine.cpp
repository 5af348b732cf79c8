// The CUDA/NCCL engine: one host thread per local rank (GPU; rank_worker.hpp), communicators from the comm plan, two
// streams, events from the event plan, a watchdog in the calling thread; what they share is the RunState
// (run_state.hpp). Under mpirun each process runs its block of ranks (cuda_plan::process_ranks) and the calling threads
// of all processes line up through the ProcessGroup. This file: the pre-flight checks, the run and its watchdog, the
// stats and trace of a run, and the backend's entry points.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/engine.hpp"
#include "backend/cuda/rank_worker.hpp"
#include "backend/cuda/run_state.hpp"
#include "backend/cuda_plan/comm_plan.hpp"
#include "backend/cuda_plan/rank_results.hpp"
#include "backend/op_event.hpp"
#include "models/schedule_json.hpp"
#include "topology/placement.hpp"

namespace paratwin {
namespace cuda {
namespace {

using cuda_plan::RankResults;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void check_versions() {
  int runtime = 0, driver = 0, nccl = 0;
  PARATWIN_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  PARATWIN_CUDA_CHECK(cudaDriverGetVersion(&driver));
  if (driver == 0) fail("no CUDA driver is installed: the CUDA backend needs an NVIDIA GPU and its driver");
  if (driver < runtime) {
    fail("the CUDA driver supports CUDA {}.{} but paratwin was built with CUDA runtime {}.{}: update the driver",
         driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  }
  PARATWIN_NCCL_CHECK(nullptr, ncclGetVersion(&nccl));
  if (nccl / 100 != NCCL_VERSION_CODE / 100) {
    fail("NCCL version mismatch: paratwin was built against NCCL {}.{} but loaded NCCL {}.{}.{}",
         NCCL_VERSION_CODE / 10000, NCCL_VERSION_CODE / 100 % 100, nccl / 10000, nccl / 100 % 100, nccl % 100);
  }
}

// The processes of one run must not share a GPU: each says which GPUs of which host it drives.
void check_distinct_gpus(const ProcessGroup& processes, const std::vector<int>& local, const RankDevices& d) {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) std::strcpy(host.data(), "?");
  std::string mine = host.data();
  for (const int r : local) mine += fmt::format(" {}", d.gpu[static_cast<std::size_t>(r)]);
  const auto all = processes.exchange(mine);
  std::map<std::string, int> owner;  // "host gpu" → process
  for (std::size_t p = 0; p < all.size(); ++p) {
    std::istringstream in(all[p]);
    std::string name;
    in >> name;
    for (int g = 0; in >> g;) {
      const auto [it, fresh] = owner.emplace(fmt::format("{} GPU {}", name, g), static_cast<int>(p));
      if (!fresh) {
        fail(
            "processes {} and {} both drive {}: start at most one process per GPU (mpirun -np = GPUs, or one per "
            "node)",
            it->second, p, it->first);
      }
    }
  }
}

// Watchdog, in the calling thread while the workers run: returns the failure for an NCCL asynchronous error or for
// the timeout (naming where each unfinished local rank waits, after giving the workers 2 s to say), or "" once every
// local rank finished or one failed (RunState::abort); the caller then aborts every communicator. With other
// processes it also completes the workers' barriers across them (so MPI is called from this thread only).
std::string watch_run(RunState& st, const Schedule& s, const CudaOptions& o, const std::vector<int>& local,
                      bool several, Clock::time_point start) {
  std::string failure;
  bool process_barrier_in_flight = false;
  for (;;) {
    bool all_done = true;
    for (const int r : local) all_done = all_done && *st.done[static_cast<std::size_t>(r)];
    if (all_done) break;
    if (st.abort) break;
    if (several) {
      if (!process_barrier_in_flight && st.take_process_barrier()) {
        o.processes->start_barrier();
        process_barrier_in_flight = true;
      }
      if (process_barrier_in_flight && o.processes->barrier_done()) {
        process_barrier_in_flight = false;
        st.release_barrier();
      }
    }
    {
      std::lock_guard lock(st.mu);
      for (std::size_t i = 0; i < st.comms.size() && failure.empty(); ++i) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(st.comms[i], &async) == ncclSuccess && async != ncclSuccess &&
            async != ncclInProgress) {
          failure = fmt::format("NCCL asynchronous error {} ({}): {}", static_cast<int>(async),
                                ncclGetErrorString(async), ncclGetLastError(st.comms[i]));
        }
      }
    }
    if (!failure.empty()) break;
    const auto phase = std::chrono::nanoseconds(st.phase_start_ns.load());
    const double in_phase = std::chrono::duration<double>(Clock::now().time_since_epoch() - phase).count();
    if (in_phase > o.timeout_s) {
      st.timed_out = true;
      const auto deadline = Clock::now() + std::chrono::seconds(2);
      while (Clock::now() < deadline) {
        bool all = true;
        for (const int r : local)
          all = all && (*st.reported[static_cast<std::size_t>(r)] || *st.done[static_cast<std::size_t>(r)]);
        if (all) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      failure = fmt::format("watchdog: no progress within --timeout {} s ({:.1f} s after the run started)", o.timeout_s,
                            seconds_since(start));
      for (const int r : local) {
        const auto i = static_cast<std::size_t>(r);
        if (*st.done[i]) continue;
        std::string where = st.stuck[i];
        if (where.empty()) {
          const int op = *st.enqueuing[i];
          where = op >= 0   ? fmt::format("blocked while posting op {} '{}' ({})", op,
                                          s.ranks[i][static_cast<std::size_t>(op)].name,
                                          op_group(s.ranks[i][static_cast<std::size_t>(op)]))
                  : several ? "blocked in communicator set-up or a barrier (another process may be late)"
                            : "blocked in communicator set-up or a host barrier";
        }
        failure += fmt::format("; rank {} {}", r, where);
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return failure;
}

}  // namespace

EngineResult run_engine(const Schedule& s, const ModelSpec& model, const RankDevices& devices_of, const CudaOptions& o,
                        bool collect) {
  const int world = static_cast<int>(s.ranks.size());
  if (world < 1) fail("the schedule has no ranks");
  if (o.warmup_steps < 0 || o.measured_steps < 1) {
    fail("--warmup {} / --steps {}: need at least one measured step", o.warmup_steps, o.measured_steps);
  }
  if (!(o.timeout_s > 0)) fail("--timeout {} must be positive", o.timeout_s);
  check_versions();
  const bool several = o.processes != nullptr && o.processes->process_count() > 1;
  const std::vector<int> local =
      several ? cuda_plan::process_ranks(world, o.processes->process_index(), o.processes->process_count())
              : cuda_plan::process_ranks(world, 0, 1);
  const int devices = cuda_device_count();
  if (devices == 0) fail("no CUDA GPU is visible (cudaGetDeviceCount = 0): the CUDA backend needs one GPU per rank");
  const auto& gpus = devices_of.gpu;
  if (static_cast<int>(gpus.size()) != world) fail("{} GPUs given for {} ranks", gpus.size(), world);
  for (const int r : local) {
    const int g = gpus[static_cast<std::size_t>(r)];
    if (g < 0 || g >= devices) {
      fail("rank {} needs GPU {} but only {} GPU(s) are visible here: the schedule has {} ranks, one GPU each", r, g,
           devices, world);
    }
  }
  if (several) check_distinct_gpus(*o.processes, local, devices_of);
  const RankLayout layout(s.meta.config);
  if (layout.world_size() != world) fail("schedule meta says {} ranks but holds {}", layout.world_size(), world);
  auto plan = cuda_plan::plan_communicators(layout);
  if (o.group_fault) {
    cuda_plan::swap_group_positions(plan, layout, o.group_fault->family, o.group_fault->group_index,
                                    o.group_fault->pos_a, o.group_fault->pos_b);
  }
  if (o.group_override) cuda_plan::override_groups(plan, o.group_override->family, o.group_override->groups);

  RunState st(world, local, several);
  if (!several || o.processes->process_index() == 0) PARATWIN_NCCL_CHECK(nullptr, ncclGetUniqueId(&st.uid));
  if (several) {  // process 0's unique id, to every process (MPI starts the ranks and shares this id, nothing more)
    const std::string mine(reinterpret_cast<const char*>(&st.uid), sizeof st.uid);
    const auto ids = o.processes->exchange(o.processes->process_index() == 0 ? mine : std::string());
    PARATWIN_ASSERT(ids.front().size() == sizeof st.uid, "NCCL unique id of {} bytes", ids.front().size());
    std::memcpy(&st.uid, ids.front().data(), sizeof st.uid);
  }
  PARATWIN_CUDA_CHECK(
      cudaHostAlloc(reinterpret_cast<void**>(&st.gate), sizeof(int), cudaHostAllocPortable | cudaHostAllocMapped));
  *st.gate = 0;
  const std::unique_ptr<int, decltype(&cudaFreeHost)> gate_owner(st.gate, &cudaFreeHost);
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  for (const int r : local) {
    workers.push_back(std::make_unique<Worker>(st, s, model, o, r, gpus[static_cast<std::size_t>(r)], plan, collect));
  }
  const auto start = Clock::now();
  st.touch();
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  // Errors of any local rank, NCCL asynchronous errors and the timeout abort every communicator.
  const std::string failure = watch_run(st, s, o, local, several, start);
  const bool aborted = st.abort || !failure.empty();
  if (aborted) {
    st.abort = true;
    st.cv.notify_all();
    std::lock_guard lock(st.mu);
    for (auto* c : st.comms) ncclCommAbort(c);
    st.comms.clear();
  }
  for (auto& t : threads) t.join();
  if (!aborted) {
    for (auto* c : st.comms) ncclCommDestroy(c);
  }
  for (const int r : local) {
    const auto& e = st.errors[static_cast<std::size_t>(r)];
    if (!e.empty()) {
      fail("CUDA backend: rank {} (GPU {}) failed after {:.1f} s: {}; every communicator was aborted", r,
           gpus[static_cast<std::size_t>(r)], seconds_since(start), e);
    }
  }
  if (!failure.empty()) fail("CUDA backend: {}; every communicator was aborted", failure);
  if (several) {  // every process gets every rank's results, so each can report (process 0 does)
    std::vector<RankResults> mine;
    for (const int r : local) mine.push_back(std::move(st.results[static_cast<std::size_t>(r)]));
    for (const auto& bytes : o.processes->exchange(cuda_plan::encode_rank_results(mine))) {
      for (auto& r : cuda_plan::decode_rank_results(bytes)) {
        const auto at = static_cast<std::size_t>(r.rank);
        PARATWIN_ASSERT(r.rank >= 0 && r.rank < world, "results of rank {}", r.rank);
        st.results[at] = std::move(r);
      }
    }
  }

  // The median step over the slowest rank of each step.
  EngineResult result;
  auto& stats = result.run.stats;
  const auto steps = st.results[0].step_s.size();
  for (std::size_t k = 0; k < steps; ++k) {
    double slowest = 0;
    for (int r = 0; r < world; ++r) slowest = std::max(slowest, st.results[static_cast<std::size_t>(r)].step_s[k]);
    stats.step_s.push_back(slowest);
  }
  std::vector<std::size_t> order(steps);
  for (std::size_t k = 0; k < steps; ++k) order[k] = k;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return stats.step_s[a] < stats.step_s[b]; });
  const auto median = order[steps / 2];
  stats.median_step = static_cast<int>(median);
  stats.median_step_s = stats.step_s[median];
  for (const auto& r : st.results) stats.device_bytes_per_rank = std::max(stats.device_bytes_per_rank, r.device_bytes);
  stats.generic_ops = st.results[0].generic_ops;
  const auto& calls = st.results[0].attention_calls;
  if (calls.size() == cuda::kAttentionPathCount) {
    stats.attention_calls_cudnn = calls[static_cast<std::size_t>(cuda::AttentionPath::kCudnnFused)];
    stats.attention_calls_cublas = calls[static_cast<std::size_t>(cuda::AttentionPath::kCublas)];
    stats.attention_calls_sparse_mla = calls[static_cast<std::size_t>(cuda::AttentionPath::kSparseMla)];
    stats.attention_calls_reference = calls[static_cast<std::size_t>(cuda::AttentionPath::kReference)];
  }
  const auto& moe_ops = st.results[0].moe_gemm_ops;
  if (moe_ops.size() == 2) {
    stats.moe_gemm_ops_cublas_streams = moe_ops[static_cast<std::size_t>(cuda_plan::MoeGemmMethod::kCublasStreams)];
    stats.moe_gemm_ops_hopper_kernel = moe_ops[static_cast<std::size_t>(cuda_plan::MoeGemmMethod::kHopperKernel)];
  }
  stats.moe_gemm_ops_fp8 = st.results[0].moe_gemm_fp8_ops;
  stats.moe_gemm_ops_fp8_kernel = st.results[0].moe_gemm_fp8_kernel_ops;
  std::map<std::string, int> fallback_ops;  // one line per reason
  for (const auto& why : st.results[0].moe_gemm_fallbacks) ++fallback_ops[why];
  for (const auto& [why, ops] : fallback_ops) {
    stats.moe_gemm_fallbacks.push_back(fmt::format("{} op(s) run cuBLAS streams, not the Hopper kernel: {}", ops, why));
  }
  stats.indexer_ops_fp8 = st.results[0].indexer_fp8_ops;
  stats.indexer_ops_bf16 = st.results[0].indexer_bf16_ops;
  std::map<std::string, int> indexer_fallback_ops;  // one line per reason
  for (const auto& why : st.results[0].indexer_fp8_fallbacks) ++indexer_fallback_ops[why];
  for (const auto& [why, ops] : indexer_fallback_ops) {
    stats.indexer_fallbacks.push_back(
        fmt::format("{} fp8 indexer op(s) run the bf16 kernels, not the fp8 Hopper kernel: {}", ops, why));
  }

  auto& trace = result.run.trace;
  trace.meta.backend = "cuda";
  trace.meta.schedule_hash = schedule_hash(s);
  trace.meta.model = s.meta.model;
  trace.meta.layout = s.meta.config.to_flags();
  trace.meta.versions = {{"cuda", cuda_versions()}, {"paratwin", "0.1.0"}};
  trace.meta.extra = {{"measured_steps", std::to_string(o.measured_steps)},
                      {"warmup_steps", std::to_string(o.warmup_steps)},
                      {"median_step_s", fmt::format("{:.9g}", stats.median_step_s)},
                      {"instrumentation", o.per_op_events ? "per-op events" : "step events"},
                      {"op_durations", o.per_op_median ? "per-op median over the measured steps" : "median step"},
                      {"attention_calls_per_step", attention_paths_summary(stats)},
                      {"moe_gemm", std::string(moe_gemm_choice_name(o.moe_gemm))},
                      {"moe_gemm_ops_per_step", moe_gemm_summary(stats)},
                      {"indexer_ops_per_step", indexer_summary(stats)}};
  if (o.per_op_events) {
    for (int r = 0; r < world; ++r) {
      const auto& ops = s.ranks[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const Op& op = ops[i];
        Event e = op_event(op, r, devices_of.node[static_cast<std::size_t>(r)]);
        const auto& starts = st.results[static_cast<std::size_t>(r)].op_start_s;
        const auto& ends = st.results[static_cast<std::size_t>(r)].op_end_s;
        e.start_s = starts[median][i];
        e.end_s = ends[median][i];
        if (o.per_op_median) {
          std::vector<double> durations;
          for (std::size_t k = 0; k < steps; ++k) durations.push_back(ends[k][i] - starts[k][i]);
          std::nth_element(durations.begin(), durations.begin() + static_cast<std::ptrdiff_t>(steps / 2),
                           durations.end());
          e.end_s = e.start_s + durations[steps / 2];
        }
        trace.events.push_back(std::move(e));
      }
    }
  }
  for (auto& r : st.results) result.outputs.push_back(std::move(r.outputs));
  return result;
}

ModelSpec model_for(const Schedule& s, const CudaOptions& o) {
  if (o.model) return *o.model;
  return load_model(s.meta.model);
}

}  // namespace cuda

namespace {

using cuda::RankDevices;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(CudaOptions o) : o_(std::move(o)) {}
  [[nodiscard]] std::string_view name() const override { return "cuda"; }
  [[nodiscard]] Trace run(const Schedule& schedule, const Placement& placement) override {
    return run_cuda(schedule, placement, o_).trace;
  }

 private:
  CudaOptions o_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  const auto err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) return 0;
  PARATWIN_CUDA_CHECK(err);
  return n;
}

std::string cuda_versions() {
  int runtime = 0, driver = 0, nccl = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  ncclGetVersion(&nccl);
  const auto cudnn = cuda::CudnnAttention::library_version();
  return fmt::format("cuda runtime {}.{}, driver {}.{}, nccl {}.{}.{}, cudnn {}.{}.{}", runtime / 1000,
                     runtime % 1000 / 10, driver / 1000, driver % 1000 / 10, nccl / 10000, nccl / 100 % 100, nccl % 100,
                     cudnn / 10000, cudnn / 100 % 100, cudnn % 100);
}

std::string attention_paths_summary(const CudaRunStats& stats) {
  return fmt::format("{} {}, {} {}, {} {}, {} {}", stats.attention_calls_cudnn,
                     to_string(cuda::AttentionPath::kCudnnFused), stats.attention_calls_cublas,
                     to_string(cuda::AttentionPath::kCublas), stats.attention_calls_sparse_mla,
                     to_string(cuda::AttentionPath::kSparseMla), stats.attention_calls_reference,
                     to_string(cuda::AttentionPath::kReference));
}

std::string moe_gemm_summary(const CudaRunStats& stats) {
  auto summary = fmt::format("{} on {}, {} on the {}", stats.moe_gemm_ops_cublas_streams,
                             cuda_plan::moe_gemm_method_name(cuda_plan::MoeGemmMethod::kCublasStreams),
                             stats.moe_gemm_ops_hopper_kernel,
                             cuda_plan::moe_gemm_method_name(cuda_plan::MoeGemmMethod::kHopperKernel));
  if (stats.moe_gemm_ops_fp8 + stats.moe_gemm_ops_fp8_kernel > 0) {
    summary += fmt::format(", {} fp8 on block-scaled cuBLASLt streams, {} fp8 on the fp8 Hopper kernel",
                           stats.moe_gemm_ops_fp8, stats.moe_gemm_ops_fp8_kernel);
  }
  return summary;
}

std::string indexer_summary(const CudaRunStats& stats) {
  return fmt::format("{} on the fp8 Hopper kernel, {} on the bf16 kernels", stats.indexer_ops_fp8,
                     stats.indexer_ops_bf16);
}

CudaRunResult run_cuda(const Schedule& schedule, const Placement& placement, const CudaOptions& options) {
  const int world = static_cast<int>(schedule.ranks.size());
  const bool several = options.processes != nullptr && options.processes->process_count() > 1;
  const int process = several ? options.processes->process_index() : 0;
  const auto local = cuda_plan::process_ranks(world, process, several ? options.processes->process_count() : 1);
  RankDevices d;
  for (int r = 0; r < world; ++r) {
    const auto& loc = placement.location(r);
    d.gpu.push_back(options.gpus.empty() ? loc.gpu : options.gpus.at(static_cast<std::size_t>(r)));
    d.node.push_back(loc.node);
  }
  // A process drives the GPUs of one node: its ranks must be placed there.
  const int node = d.node[static_cast<std::size_t>(local.front())];
  for (const int r : local) {
    if (d.node[static_cast<std::size_t>(r)] != node) {
      fail(
          "process {} would drive rank {} (node {}) and rank {} (node {}): one process runs the GPUs of one node; "
          "launch one process per node or per GPU with mpirun (here: mpirun -np {} or -np {} paratwin run ...)",
          process, local.front(), node, r, d.node[static_cast<std::size_t>(r)], placement.cluster().nodes, world);
    }
  }
  return cuda::run_engine(schedule, cuda::model_for(schedule, options), d, options, false).run;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options) {
  return std::make_unique<CudaBackend>(options);
}

}  // namespace paratwin
