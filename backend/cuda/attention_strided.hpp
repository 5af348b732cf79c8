#pragma once
/// Causal attention over strided positions on cuDNN's fused attention (attention_cudnn.hpp), whose mask is a
/// diagonal: key j visible to query i when j ≤ i + shift. The round-robin split of CP puts a rank's queries at
/// positions q_start + i·S (S the CP size):
/// - against keys of the same stride (a ring step's block of another rank's keys, kv_start + j·S), query i sees key j
///   when j ≤ i + ⌊(q_start − kv_start) / S⌋: one call, the diagonal shifted by that;
/// - against contiguous keys (all-gather CP: every key in position order), the bound moves S keys per query, so the
///   keys are taken in their S residue classes: within class c (keys kv_start + c + t·S, rows S apart), query i sees
///   key t when t ≤ i + ⌊(q_start − kv_start − c) / S⌋, a diagonal again. Each class is one call (bf16 output and
///   log-sum-exp) merged into a running result by their log-sum-exps (launch_merge_bf16_attention), the last merge
///   writing the output rows. The same FLOPs as one call; each merge reads two bf16 copies of the output and writes
///   one. The running result and the class's live in the workspace, in calls over groups of whole KV heads small
///   enough to leave cuDNN half of it.

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {

/// Enqueues `a` (dense, causal, strided queries: q_stride > 1, with kv_stride 1 or equal to q_stride) on `stream`
/// through `cudnn` and returns true; returns false when `a` is not of that form, asks for the partial form with
/// contiguous keys, or when cuDNN declines a call: the caller then runs another path. Until it returns true it has
/// written nothing but the workspace.
bool run_strided_causal_cudnn(CudnnAttention& cudnn, const AttentionArgs& a, void* workspace,
                              std::size_t workspace_bytes, cudaStream_t stream);

}  // namespace paratwin::cuda
