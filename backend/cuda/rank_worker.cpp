// One rank's thread of the CUDA/NCCL engine (rank_worker.hpp): binding and the memory check, allocation, the
// communicators, the attention kernels loaded before the first step, and each step's enqueue (behind the step gate)
// and completion poll, with the reports of where a rank is stuck when the watchdog fires.
#include "backend/cuda/rank_worker.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda_plan/nccl_call_plan.hpp"
#include "backend/cuda_plan/rank_results.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {
namespace {

using cuda_plan::CommSource;
using cuda_plan::NcclFunction;
using cuda_plan::NcclType;

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

}  // namespace

std::string op_group(const Op& op) {
  if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
    return fmt::format("{} on {}[{}]", to_string(c->kind), family_key(c->family), c->group_index);
  }
  if (const auto* p = std::get_if<P2POp>(&op.body))
    return fmt::format("{} with rank {}", p->is_send ? "send" : "recv", p->peer);
  return fmt::format("{} on the compute stream", to_string(std::get<ComputeOp>(op.body).kind));
}

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
  cuda_plan::RankOutputs out;
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

}  // namespace paratwin::cuda
