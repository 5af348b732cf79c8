// The CUDA/NCCL engine: one host thread per local rank (GPU), communicators from the comm plan, two streams, events
// from the event plan, a watchdog in the calling thread. Under mpirun each process runs its block of ranks
// (cuda_plan::process_ranks) and the calling threads of all processes line up through the ProcessGroup.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_dispatch.hpp"
#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/engine.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/op_binder.hpp"
#include "backend/cuda_plan/comm_plan.hpp"
#include "backend/cuda_plan/event_plan.hpp"
#include "backend/cuda_plan/rank_results.hpp"
#include "backend/op_event.hpp"
#include "models/schedule_json.hpp"
#include "topology/placement.hpp"

namespace paratwin {
namespace {

using Clock = std::chrono::steady_clock;
using cuda::BoundOp;
using cuda::EngineResult;
using cuda::RankDevices;
using cuda::RankProgram;
using cuda_plan::CommSource;
using cuda_plan::NcclFunction;
using cuda_plan::NcclType;
using cuda_plan::RankOutputs;
using cuda_plan::RankResults;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ncclDataType_t nccl_type(NcclType t) {
  switch (t) {
    case NcclType::kBf16:
      return ncclBfloat16;
    case NcclType::kFp8E4M3:
      return ncclFloat8e4m3;
    case NcclType::kFp32:
      return ncclFloat32;
    case NcclType::kInt32:
      return ncclInt32;
    case NcclType::kUint8:
      return ncclUint8;
  }
  return ncclUint8;
}

std::string op_group(const Op& op) {
  if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
    return fmt::format("{} on {}[{}]", to_string(c->kind), family_key(c->family), c->group_index);
  }
  if (const auto* p = std::get_if<P2POp>(&op.body))
    return fmt::format("{} with rank {}", p->is_send ? "send" : "recv", p->peer);
  return fmt::format("{} on the compute stream", to_string(std::get<ComputeOp>(op.body).kind));
}

/// State shared by the workers (this process's ranks) and the watchdog of one run. Per-rank vectors are indexed by
/// the global rank; only this process's entries are used until the results are exchanged.
struct RunState {
  RunState(int ranks, std::vector<int> local, bool several_processes)
      : world(ranks),
        local_ranks(std::move(local)),
        cross_process(several_processes),
        stuck(static_cast<std::size_t>(ranks)),
        errors(static_cast<std::size_t>(ranks)),
        results(static_cast<std::size_t>(ranks)) {
    for (int i = 0; i < ranks; ++i) {
      enqueuing.emplace_back(std::make_unique<std::atomic<int>>(-1));
      done.emplace_back(std::make_unique<std::atomic<bool>>(false));
      reported.emplace_back(std::make_unique<std::atomic<bool>>(false));
    }
  }
  int world;
  std::vector<int> local_ranks;  // the ranks this process drives, ascending
  bool cross_process;            // other processes run the other ranks: barriers span them too
  ncclUniqueId uid{};
  std::atomic<bool> abort{false};      // every worker stops; comms are (being) aborted
  std::atomic<bool> timed_out{false};  // the watchdog fired: workers report where they are stuck
  std::atomic<std::int64_t> phase_start_ns{0};
  std::vector<std::unique_ptr<std::atomic<int>>> enqueuing;  // op being enqueued per rank (−1: none)
  std::vector<std::unique_ptr<std::atomic<bool>>> done, reported;
  std::mutex mu;
  std::condition_variable cv;
  int barrier_count = 0, barrier_generation = 0;
  bool process_barrier_wanted = false;  // guarded by mu: the local ranks arrived, the watchdog thread goes on
  std::vector<ncclComm_t> comms;        // every communicator created (for abort), guarded by mu
  std::vector<std::string> stuck;       // per rank, filled on timeout
  std::vector<std::string> errors;      // per rank
  std::vector<RankResults> results;     // per rank
  // The step gate (see Worker::gate_device_): one host-mapped flag per process that its GPUs poll, raised once per
  // step by its first rank's thread after every rank of every process enqueued.
  int* gate = nullptr;

  void touch() {
    phase_start_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  }
  // Returns false when the run was aborted while waiting. With other processes, the last local rank to arrive
  // hands the barrier to the watchdog thread, which completes it across processes (release_barrier).
  bool barrier() {
    std::unique_lock lock(mu);
    const int gen = barrier_generation;
    if (++barrier_count == static_cast<int>(local_ranks.size())) {
      barrier_count = 0;
      if (cross_process) {
        process_barrier_wanted = true;
      } else {
        ++barrier_generation;
        cv.notify_all();
        return !abort;
      }
    }
    // Timed waits: an abort raised without the lock cannot be missed.
    while (barrier_generation == gen && !abort) cv.wait_for(lock, std::chrono::milliseconds(10));
    return !abort;
  }
  // Called by the watchdog thread once every process reached the barrier.
  void release_barrier() {
    std::lock_guard lock(mu);
    ++barrier_generation;
    cv.notify_all();
  }
  [[nodiscard]] bool take_process_barrier() {
    std::lock_guard lock(mu);
    return std::exchange(process_barrier_wanted, false);
  }
  void add_comm(ncclComm_t c) {
    std::lock_guard lock(mu);
    comms.push_back(c);
  }
};

class Worker {
 public:
  Worker(RunState& st, const Schedule& s, const ModelSpec& model, const CudaOptions& o, int rank, int gpu,
         const cuda_plan::CommPlan& plan, bool collect)
      : st_(st), s_(s), model_(model), o_(o), rank_(rank), gpu_(gpu), plan_(plan), collect_(collect) {}

  void run() {
    try {
      body();
    } catch (const std::exception& e) {
      st_.errors[static_cast<std::size_t>(rank_)] = e.what();
      st_.abort = true;
      st_.cv.notify_all();
    }
    *st_.done[static_cast<std::size_t>(rank_)] = true;
  }

 private:
  void body();
  void make_comms();
  void load_attention_kernels();
  ncclComm_t comm_of(GroupFamily family) const;
  void enqueue_step();
  bool wait_step();
  void issue(const BoundOp& b);
  void collect_outputs();

  RunState& st_;
  const Schedule& s_;
  const ModelSpec& model_;
  const CudaOptions& o_;
  int rank_, gpu_;
  const cuda_plan::CommPlan& plan_;
  bool collect_;
  RankProgram prog_;
  cuda_plan::EventPlan events_;
  cudaStream_t compute_ = nullptr, comm_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t blas_lt_ = nullptr;
  void* lt_workspace_ = nullptr;
  void* attention_workspace_ = nullptr;
  std::unique_ptr<cuda::CudnnAttention> cudnn_attention_;
  cuda::AttentionPathCounts attention_paths_{};      // this step's attention calls per path
  std::unique_ptr<cuda::GemmStreams> gemm_streams_;  // the expert GEMMs' side streams
  ncclComm_t world_ = nullptr;
  std::array<ncclComm_t, kFamilyCount> family_comms_{};
  std::vector<cudaEvent_t> start_, end_;  // per op (per-op mode: timing; light mode: end_ = done events)
  cudaEvent_t begin_ = nullptr, finish_ = nullptr, comm_finish_ = nullptr;
  // The step gate: every rank enqueues its whole step behind a kernel that polls RunState::gate, raised once all
  // ranks finished enqueuing, so no GPU starts while another rank's host is still enqueuing (which would show up as
  // waits inside the first collectives of the step).
  int* gate_device_ = nullptr;
  cudaEvent_t gate_open_ = nullptr;
  int* step_sync_ = nullptr;  // device int of the step-start all-reduce
  int step_ = 0;
  static constexpr std::int64_t kGateTimeoutNs = 200'000'000;  // 0.2 s: far above any enqueue time
};

ncclComm_t Worker::comm_of(GroupFamily family) const {
  const auto& fc = plan_.of(family);
  switch (fc.source) {
    case CommSource::kSplit:
      return family_comms_[static_cast<std::size_t>(family_index(family))];
    case CommSource::kAliasTp:
      return family_comms_[static_cast<std::size_t>(family_index(GroupFamily::kTp))];
    case CommSource::kAliasAttnCp:
      return family_comms_[static_cast<std::size_t>(family_index(GroupFamily::kAttnCp))];
    case CommSource::kNone:
      break;
  }
  fail("rank {}: the schedule uses family {}, which has no communicator", rank_, family_key(family));
}

void Worker::make_comms() {
  st_.touch();
  PARATWIN_NCCL_CHECK(nullptr, ncclCommInitRank(&world_, st_.world, st_.uid, rank_));
  st_.add_comm(world_);
  for (const auto& fc : plan_.families) {
    if (fc.source != CommSource::kSplit) continue;
    ncclComm_t c = nullptr;
    const auto r = static_cast<std::size_t>(rank_);
    PARATWIN_NCCL_CHECK(world_, ncclCommSplit(world_, fc.color[r], fc.key[r], &c, nullptr));
    st_.add_comm(c);
    family_comms_[static_cast<std::size_t>(family_index(fc.family))] = c;
  }
}

void Worker::issue(const BoundOp& b) {
  const auto& c = b.call;
  const auto type = nccl_type(c.type);
  const auto count = static_cast<std::size_t>(c.count);
  void* send = b.send_buffer >= 0 ? prog_.pool.ptr(b.send_buffer) : nullptr;
  void* recv = b.recv_buffer >= 0 ? prog_.pool.ptr(b.recv_buffer) : nullptr;
  if (c.world_comm) {
    if (c.function == NcclFunction::kSend) {
      PARATWIN_NCCL_CHECK(world_, ncclSend(send, count, type, c.peer, world_, comm_));
    } else {
      PARATWIN_NCCL_CHECK(world_, ncclRecv(recv, count, type, c.peer, world_, comm_));
    }
    return;
  }
  ncclComm_t comm = comm_of(c.family);
  switch (c.function) {
    case NcclFunction::kAllGather:
      PARATWIN_NCCL_CHECK(comm, ncclAllGather(send, recv, count, type, comm, comm_));
      break;
    case NcclFunction::kReduceScatter:
      PARATWIN_NCCL_CHECK(comm, ncclReduceScatter(send, recv, count, type, ncclSum, comm, comm_));
      break;
    case NcclFunction::kAllReduce:
      PARATWIN_NCCL_CHECK(comm, ncclAllReduce(send, send, count, type, ncclSum, comm, comm_));
      break;
    case NcclFunction::kBroadcast:
      PARATWIN_NCCL_CHECK(comm, ncclBroadcast(send, send, count, type, c.root, comm, comm_));
      break;
    case NcclFunction::kAllToAll:
      PARATWIN_NCCL_CHECK(comm, ncclAlltoAll(send, recv, count, type, comm, comm_));
      break;
    case NcclFunction::kGroupedSendRecv: {
      const auto size = cuda_plan::nccl_type_bytes(c.type);
      PARATWIN_NCCL_CHECK(comm, ncclGroupStart());
      for (const auto& t : c.transfers) {
        if (t.is_send) {
          PARATWIN_NCCL_CHECK(comm, ncclSend(static_cast<char*>(send) + t.offset * size,
                                             static_cast<std::size_t>(t.count), type, t.peer, comm, comm_));
        } else {
          PARATWIN_NCCL_CHECK(comm, ncclRecv(static_cast<char*>(recv) + t.offset * size,
                                             static_cast<std::size_t>(t.count), type, t.peer, comm, comm_));
        }
      }
      PARATWIN_NCCL_CHECK(comm, ncclGroupEnd());
      break;
    }
    case NcclFunction::kSend:
    case NcclFunction::kRecv:
      PARATWIN_ASSERT(false, "P2P call outside the world communicator");
  }
}

void Worker::enqueue_step() {
  const auto& ops = s_.ranks[static_cast<std::size_t>(rank_)];
  cuda::ExecCtx ctx{compute_,
                    blas_,
                    &prog_.pool,
                    blas_lt_,
                    lt_workspace_,
                    cuda::kLtWorkspaceBytes,
                    attention_workspace_,
                    cuda::kAttentionWorkspaceBytes,
                    cudnn_attention_.get(),
                    &attention_paths_};
  attention_paths_ = {};
  ctx.gemm_streams = gemm_streams_.get();
  cuda::launch_wait_flag(gate_device_, step_ + 1, kGateTimeoutNs, compute_);
  // Then one untimed one-element all-reduce over the world: the GPUs leave it together, so the step's first collective
  // does not absorb another GPU's late start (seen as 150 µs in a 4 KiB all-gather without it).
  PARATWIN_CUDA_CHECK(cudaEventRecord(gate_open_, compute_));
  PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(comm_, gate_open_, 0));
  if (s_.ranks.size() > 1) {
    PARATWIN_NCCL_CHECK(world_, ncclAllReduce(step_sync_, step_sync_, 1, ncclInt32, ncclSum, world_, comm_));
  }
  PARATWIN_CUDA_CHECK(cudaEventRecord(begin_, comm_));
  PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(compute_, begin_, 0));
  for (const auto& launch : events_.launches) {
    cudaStream_t stream = launch.stream == Stream::kCompute ? compute_ : comm_;
    if (launch.wait_for >= 0) {
      PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(stream, end_[static_cast<std::size_t>(launch.wait_for)], 0));
    }
    const int first = launch.ops.front();
    *st_.enqueuing[static_cast<std::size_t>(rank_)] = first;
    if (o_.per_op_events) PARATWIN_CUDA_CHECK(cudaEventRecord(start_[static_cast<std::size_t>(first)], stream));
    const auto& b0 = prog_.ops[static_cast<std::size_t>(first)];
    if (b0.compute) {
      b0.compute(ctx);
      const auto err = cudaGetLastError();
      if (err != cudaSuccess) {
        fail("rank {} op {} '{}': kernel launch failed: {}", rank_, first, ops[static_cast<std::size_t>(first)].name,
             cudaGetErrorString(err));
      }
    } else if (launch.ops.size() == 1) {
      issue(b0);
    } else {
      PARATWIN_NCCL_CHECK(world_, ncclGroupStart());
      for (const int m : launch.ops) issue(prog_.ops[static_cast<std::size_t>(m)]);
      PARATWIN_NCCL_CHECK(world_, ncclGroupEnd());
    }
    for (const int m : launch.ops) {
      const auto i = static_cast<std::size_t>(m);
      if (o_.per_op_events) {
        if (m != first) PARATWIN_CUDA_CHECK(cudaEventRecord(start_[i], stream));
        PARATWIN_CUDA_CHECK(cudaEventRecord(end_[i], stream));
      } else if (events_.needs_done_event[i]) {
        PARATWIN_CUDA_CHECK(cudaEventRecord(end_[i], stream));
      }
    }
  }
  *st_.enqueuing[static_cast<std::size_t>(rank_)] = -1;
  PARATWIN_CUDA_CHECK(cudaEventRecord(comm_finish_, comm_));
  PARATWIN_CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_finish_, 0));
  PARATWIN_CUDA_CHECK(cudaEventRecord(finish_, compute_));
}

// Polls the step's end; returns false when the run is aborted.
bool Worker::wait_step() {
  const auto& ops = s_.ranks[static_cast<std::size_t>(rank_)];
  for (;;) {
    const auto q = cudaEventQuery(finish_);
    if (q == cudaSuccess) return true;
    if (q != cudaErrorNotReady) fail("rank {}: CUDA error while the step ran: {}", rank_, cudaGetErrorString(q));
    if (st_.timed_out && !*st_.reported[static_cast<std::size_t>(rank_)]) {
      std::string where = "after its last op (waiting for the step end)";
      if (o_.per_op_events) {
        for (std::size_t i = 0; i < ops.size(); ++i) {
          if (cudaEventQuery(end_[i]) != cudaSuccess) {
            where = fmt::format("at op {} '{}' ({})", i, ops[i].name, op_group(ops[i]));
            break;
          }
        }
      } else {
        where = "inside the step (light mode: rerun with per-op events for the op)";
      }
      st_.stuck[static_cast<std::size_t>(rank_)] = where;
      *st_.reported[static_cast<std::size_t>(rank_)] = true;
    }
    if (st_.abort) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Worker::collect_outputs() {
  RankOutputs out;
  out.hidden_size = prog_.outputs.hidden_size;
  const auto h = static_cast<std::size_t>(out.hidden_size);
  for (const auto& rows : prog_.outputs.hidden) {
    const auto n = rows.request.size();
    std::vector<std::uint16_t> raw(n * h);
    PARATWIN_CUDA_CHECK(cudaMemcpy(raw.data(), prog_.pool.ptr(rows.buffer), raw.size() * 2, cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const std::uint32_t bits = static_cast<std::uint32_t>(raw[i]) << 16;
      float f = 0;
      std::memcpy(&f, &bits, 4);
      out.hidden.push_back(f);
    }
    out.request.insert(out.request.end(), rows.request.begin(), rows.request.end());
    out.position.insert(out.position.end(), rows.position.begin(), rows.position.end());
  }
  if (prog_.outputs.logits_buffer >= 0) {
    const auto cols = static_cast<std::size_t>(prog_.outputs.logits_cols);
    const int attn_tp = s_.meta.config.attn_tp_size();
    const int requests = s_.meta.batch / s_.meta.config.attn_dp_size();
    std::vector<float> all(cols * static_cast<std::size_t>(attn_tp * requests));
    PARATWIN_CUDA_CHECK(
        cudaMemcpy(all.data(), prog_.pool.ptr(prog_.outputs.logits_buffer), all.size() * 4, cudaMemcpyDeviceToHost));
    // [attn_tp][requests][cols] → request 0's full row.
    for (int t = 0; t < attn_tp; ++t) {
      const auto base = static_cast<std::size_t>(t * requests) * cols;
      out.logits.insert(out.logits.end(), all.begin() + static_cast<std::ptrdiff_t>(base),
                        all.begin() + static_cast<std::ptrdiff_t>(base + cols));
    }
    out.logits.resize(static_cast<std::size_t>(model_.vocab_size));
  }
  st_.results[static_cast<std::size_t>(rank_)].outputs = std::move(out);
}

// Runs each distinct dense attention call of the rank once, before the first step, on whatever its buffers hold (a
// step writes every output anew), so that its kernels are loaded (cuDNN's for each shape's plan; the plan is built
// too). CUDA loads a kernel at its first launch, and that load waits for the GPU: inside a step it waits behind the
// step gate, or for good behind a receive that never completes (seen on two H200: the watchdog then named the
// attention being posted, not the receive). A later micro-batch's attention is such a first launch: its causal
// mask is shifted, another cuDNN kernel. Index-sparse calls are left out: their key indices exist only once the
// step's indexer ran, and they launch the backend's own kernels.
void Worker::load_attention_kernels() {
  const cuda::AttentionResources resources{cudnn_attention_.get(), blas_, attention_workspace_,
                                           cuda::kAttentionWorkspaceBytes};
  std::set<std::string> loaded;
  for (const auto& args_of : prog_.attention_calls) {
    const auto args = args_of(prog_.pool);
    if (args.key_index != nullptr || !loaded.insert(cuda::attention_kernel_key(args)).second) continue;
    (void)cuda::dispatch_attention(args, resources, compute_);
  }
  PARATWIN_CUDA_CHECK(cudaStreamSynchronize(compute_));
}

void Worker::body() {
  PARATWIN_CUDA_CHECK(cudaSetDevice(gpu_));
  cuda::BindOptions bind;
  bind.moe_gemm = o_.moe_gemm;
  int major = 0, minor = 0;
  PARATWIN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, gpu_));
  PARATWIN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, gpu_));
  bind.compute_capability = major * 10 + minor;
  cuda::bind_rank(s_, model_, rank_, o_.seed, bind, prog_);
  events_ = cuda_plan::plan_events(s_.ranks[static_cast<std::size_t>(rank_)], rank_);
  auto& mine = st_.results[static_cast<std::size_t>(rank_)];
  mine.rank = rank_;
  mine.generic_ops = prog_.generic_ops;
  // Memory check before anything is allocated (NCCL and cuBLAS need room of their own too, and the side streams their
  // cuBLASLt workspaces where fp8 expert GEMMs run on them).
  constexpr std::int64_t kRuntimeReserveBytes = std::int64_t{1} << 30;
  const std::size_t side_lt_workspace_bytes = prog_.fp8_side_streams ? cuda::kLtWorkspaceBytes : 0;
  const auto reserve_bytes =
      kRuntimeReserveBytes + cuda::kGemmSideStreams * static_cast<std::int64_t>(side_lt_workspace_bytes);
  std::size_t free_bytes = 0, total_bytes = 0;
  PARATWIN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const auto need = prog_.pool.total_bytes() + reserve_bytes;
  if (need > static_cast<std::int64_t>(free_bytes)) {
    fail(
        "rank {} needs {:.2f} GiB on GPU {} (schedule buffers {:.2f} GiB + {:.2f} GiB for CUDA/NCCL and cuBLASLt "
        "workspaces) but only {:.2f} GiB are free: short by {:.2f} GiB; cut --layers or --prompt-len, or use more ranks",
        rank_, static_cast<double>(need) / 1073741824.0, gpu_,
        static_cast<double>(prog_.pool.total_bytes()) / 1073741824.0,
        static_cast<double>(reserve_bytes) / 1073741824.0, static_cast<double>(free_bytes) / 1073741824.0,
        static_cast<double>(need - static_cast<std::int64_t>(free_bytes)) / 1073741824.0);
  }
  if (!st_.barrier()) return;

  PARATWIN_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
  PARATWIN_CUDA_CHECK(cudaStreamCreateWithFlags(&comm_, cudaStreamNonBlocking));
  PARATWIN_CUBLAS_CHECK(cublasCreate(&blas_));
  PARATWIN_CUBLAS_CHECK(cublasSetStream(blas_, compute_));
  PARATWIN_CUBLAS_CHECK(cublasLtCreate(&blas_lt_));
  PARATWIN_CUDA_CHECK(cudaMalloc(&lt_workspace_, cuda::kLtWorkspaceBytes));
  PARATWIN_CUDA_CHECK(cudaMalloc(&attention_workspace_, cuda::kAttentionWorkspaceBytes));
  cudnn_attention_ = std::make_unique<cuda::CudnnAttention>();
  gemm_streams_ = std::make_unique<cuda::GemmStreams>(cuda::kGemmSideStreams, side_lt_workspace_bytes);
  prog_.pool.allocate(compute_);
  mine.device_bytes = prog_.pool.total_bytes();  // what was allocated (the check above used an upper bound)
  load_attention_kernels();
  auto moe_gemms = cuda::moe_gemm_launches(prog_);
  mine.moe_gemm_ops = std::move(moe_gemms.ops);
  mine.moe_gemm_fallbacks = std::move(moe_gemms.fallbacks);
  mine.moe_gemm_fp8_ops = moe_gemms.fp8_ops;
  mine.moe_gemm_fp8_kernel_ops = moe_gemms.fp8_kernel_ops;
  mine.indexer_fp8_ops = prog_.indexer_fp8_ops;
  mine.indexer_bf16_ops = prog_.indexer_bf16_ops;
  mine.indexer_fp8_fallbacks = prog_.indexer_fp8_fallbacks;
  make_comms();
  if (!st_.barrier()) return;

  const auto n = s_.ranks[static_cast<std::size_t>(rank_)].size();
  const unsigned flags = o_.per_op_events ? cudaEventDefault : cudaEventDisableTiming;
  start_.resize(n, nullptr);
  end_.resize(n, nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    if (o_.per_op_events) PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&start_[i], flags));
    if (o_.per_op_events || events_.needs_done_event[i]) PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&end_[i], flags));
  }
  PARATWIN_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&gate_device_), st_.gate, 0));
  PARATWIN_CUDA_CHECK(cudaEventCreate(&begin_));
  PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&gate_open_, cudaEventDisableTiming));
  PARATWIN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&step_sync_), sizeof(int)));
  PARATWIN_CUDA_CHECK(cudaMemset(step_sync_, 0, sizeof(int)));
  PARATWIN_CUDA_CHECK(cudaEventCreate(&finish_));
  PARATWIN_CUDA_CHECK(cudaEventCreateWithFlags(&comm_finish_, cudaEventDisableTiming));

  const int steps = o_.warmup_steps + o_.measured_steps;
  for (int step = 0; step < steps; ++step) {
    // Steps start together, so a step's time is its own (not the wait for a slower rank's previous step).
    if (!st_.barrier()) return;
    st_.touch();
    step_ = step;
    enqueue_step();
    if (!st_.barrier()) return;
    if (rank_ == st_.local_ranks.front()) *static_cast<volatile int*>(st_.gate) = step + 1;
    if (!wait_step()) return;
    if (step < o_.warmup_steps) continue;
    float ms = 0;
    PARATWIN_CUDA_CHECK(cudaEventElapsedTime(&ms, begin_, finish_));
    mine.step_s.push_back(static_cast<double>(ms) * 1e-3);
    std::vector<double> starts(n, 0.0), ends(n, 0.0);
    if (o_.per_op_events) {
      for (std::size_t i = 0; i < n; ++i) {
        float a = 0, b = 0;
        PARATWIN_CUDA_CHECK(cudaEventElapsedTime(&a, begin_, start_[i]));
        PARATWIN_CUDA_CHECK(cudaEventElapsedTime(&b, begin_, end_[i]));
        starts[i] = static_cast<double>(a) * 1e-3;
        ends[i] = static_cast<double>(b) * 1e-3;
      }
    }
    mine.op_start_s.push_back(std::move(starts));
    mine.op_end_s.push_back(std::move(ends));
  }
  if (collect_) collect_outputs();
  mine.attention_calls.assign(attention_paths_.begin(), attention_paths_.end());
  if (!st_.barrier()) return;
  for (auto* e : start_)
    if (e != nullptr) cudaEventDestroy(e);
  for (auto* e : end_)
    if (e != nullptr) cudaEventDestroy(e);
  cudaEventDestroy(begin_);
  cudaEventDestroy(gate_open_);
  cudaFree(step_sync_);
  cudaEventDestroy(finish_);
  cudaEventDestroy(comm_finish_);
  prog_.pool.release();
  gemm_streams_.reset();
  cublasDestroy(blas_);
  cublasLtDestroy(blas_lt_);
  cudaFree(lt_workspace_);
  cudaFree(attention_workspace_);
  cudnn_attention_.reset();
  cudaStreamDestroy(compute_);
  cudaStreamDestroy(comm_);
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

}  // namespace

namespace cuda {

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

  // Watchdog: errors of any local rank, NCCL asynchronous errors and the timeout abort every communicator; with
  // other processes it also completes the workers' barriers across them (so MPI is called from this thread only).
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
