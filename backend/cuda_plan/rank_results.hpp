#pragma once
/// What each rank of a CUDA run hands to the process that reports it: its measured step times, per-op event times
/// and, for `run --check`, its outputs. Processes started by mpirun exchange these as bytes (ProcessGroup), so they
/// are encoded here, with the rule that splits the ranks over the processes. Plain data, no CUDA.

#include <cstdint>
#include <string>
#include <vector>

namespace paratwin::cuda_plan {

/// Outputs copied back after the last step, for the numerical check.
struct RankOutputs {
  std::vector<std::int64_t> request, position;  ///< per output row: its token
  std::vector<float> hidden;                    ///< rows × hidden_size
  std::int64_t hidden_size = 0;
  std::vector<float> logits;  ///< request 0's last-token logits; empty when this rank has none
  friend bool operator==(const RankOutputs&, const RankOutputs&) = default;
};

struct RankResults {
  int rank = -1;
  std::vector<double> step_s;                             ///< per measured step
  std::vector<std::vector<double>> op_start_s, op_end_s;  ///< [measured step][op], from the step's start
  std::int64_t device_bytes = 0;                          ///< schedule buffers allocated on the GPU
  std::vector<std::string> generic_ops;                   ///< ops run on scratch buffers (no real data flow)
  std::vector<std::int64_t> attention_calls;              ///< the last step's attention calls per kernel path
  /// The MoE expert GEMMs of one step by launch, in MoeGemmMethod order (cuBLAS streams, Hopper kernel).
  std::vector<std::int64_t> moe_gemm_ops;
  std::vector<std::string> moe_gemm_fallbacks;  ///< per op that runs cuBLAS streams for want of the kernel: why
  std::int64_t moe_gemm_fp8_ops = 0;  ///< fp8 MoE expert GEMMs of one step (block-scaled cuBLASLt on side streams)
  std::int64_t moe_gemm_fp8_kernel_ops = 0;  ///< fp8 MoE expert GEMMs of one step on the persistent fp8 kernel
  /// DSA indexer-score ops of one step: on the fp8 Hopper kernel, on the bf16 kernels, and per fp8 op among the
  /// latter why it cannot run the fp8 kernel (cuda_plan::indexer_score_path).
  std::int64_t indexer_fp8_ops = 0;
  std::int64_t indexer_bf16_ops = 0;
  std::vector<std::string> indexer_fp8_fallbacks;
  RankOutputs outputs;
  friend bool operator==(const RankResults&, const RankResults&) = default;
};

[[nodiscard]] std::string encode_rank_results(const std::vector<RankResults>& results);
/// Throws paratwin::InternalError on bytes that encode_rank_results did not write (truncated or trailing data).
[[nodiscard]] std::vector<RankResults> decode_rank_results(const std::string& bytes);

/// The ranks that process `process_index` of `process_count` drives: the contiguous block
/// [index·world/count, (index+1)·world/count). Ranks are numbered node-major, so one process per node gets its
/// node's GPUs and one process per GPU gets its own rank. Throws paratwin::Error when `process_count` does not
/// divide `world`, naming both and the launches that work.
[[nodiscard]] std::vector<int> process_ranks(int world, int process_index, int process_count);

}  // namespace paratwin::cuda_plan
