#pragma once
/// Dense attention as one fused flash-attention kernel through cuDNN's graph API (the C backend API of cuDNN 9): the
/// pattern graph S = Q·Kᵀ, scale, causal mask, softmax (with its statistics), O = P·V, which cuDNN's fused attention
/// engine recognises. Same arguments and results as launch_attention (kernels.hpp) for the shapes it takes:
/// dense attention (key_index null) whose query and key positions are contiguous (q_stride = kv_stride = 1, or any
/// strides when not causal), GQA/MQA/MHA, head dims cuDNN supports (128/128, MLA's 192/128, ...), several requests,
/// 16-byte aligned rows, and the partial form of ring CP (out_f32 and lse).
///
/// Masks: a query at position p sees the keys at positions ≤ p. With queries from q_start and keys from kv_start
/// that is key j ≤ query i + (q_start − kv_start): a causal mask whose diagonal is shifted right, built as cuDNN's
/// "right bound" (row index + shift ≥ column index). Queries that see no key (i + shift < 0) are left out of the
/// graph: their output rows are zeros and their log-sum-exps −inf, written here, as AttentionArgs documents.
///
/// Each distinct shape builds one execution plan, once (cuDNN's heuristics, then the first engine that finalizes),
/// kept for the object's lifetime, so a step never rebuilds a graph. The workspace holds cuDNN's own, the softmax
/// statistics and, in the partial form, cuDNN's bf16 output before it is widened to fp32; when that does not fit,
/// the heads run in several calls of whole KV-head groups (one more plan).

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "backend/cuda/kernels.hpp"

namespace paratwin::cuda {

class CudnnAttention {
 public:
  /// Creates a cuDNN handle on the current device; throws paratwin::Error when cuDNN cannot start.
  CudnnAttention();
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  /// Enqueues `a` on `stream` and returns true when cuDNN computes it exactly; returns false with nothing enqueued
  /// when it cannot (index-sparse or strided causal attention, unaligned rows, a shape no cuDNN engine takes, a
  /// workspace too small): the caller falls back to attention_gemm. The reason is then in declined_reason().
  /// cuDNN errors other than "not supported" throw paratwin::Error naming the call and the shape.
  bool run(const AttentionArgs& a, void* workspace, std::size_t workspace_bytes, cudaStream_t stream);

  /// Why the last run() returned false.
  [[nodiscard]] const std::string& declined_reason() const;

  /// Execution plans built so far (shapes cuDNN declined count too: they are not asked again).
  [[nodiscard]] std::size_t cached_plans() const;

  /// cuDNN's version as loaded at run time (cudnnGetVersion), e.g. 91400 for 9.14.0.
  [[nodiscard]] static std::size_t library_version();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace paratwin::cuda
