#include "backend/cuda/attention_strided.hpp"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/attention_layout.hpp"
#include "topology/error.hpp"

namespace paratwin::cuda {
namespace {

using i64 = std::int64_t;

constexpr i64 kBufferAlignBytes = 256;

i64 round_up(i64 n, i64 to) {
  return (n + to - 1) / to * to;
}

// ⌊n / d⌋ for d > 0, also for negative n.
i64 floor_div(i64 n, i64 d) {
  return n >= 0 ? n / d : -((-n + d - 1) / d);
}

// The workspace of one call over `heads` query heads: the running result and the next class's (bf16 rows of
// heads · d_v) and their log-sum-exps, each aligned for cuDNN.
struct MergeBuffers {
  void *running = nullptr, *part = nullptr;
  float *running_lse = nullptr, *part_lse = nullptr;
  i64 bytes = 0;
};
MergeBuffers merge_buffers(void* workspace, i64 q_tokens, i64 heads, i64 d_v) {
  const i64 out_bytes = round_up(q_tokens * heads * d_v * 2, kBufferAlignBytes);
  const i64 lse_bytes = round_up(q_tokens * heads * 4, kBufferAlignBytes);
  auto* base = static_cast<char*>(workspace);
  MergeBuffers m;
  if (base != nullptr) {
    m.running = base;
    m.part = base + out_bytes;
    m.running_lse = reinterpret_cast<float*>(base + 2 * out_bytes);
    m.part_lse = reinterpret_cast<float*>(base + 2 * out_bytes + lse_bytes);
  }
  m.bytes = 2 * out_bytes + 2 * lse_bytes;
  return m;
}

}  // namespace

bool run_strided_causal_cudnn(CudnnAttention& cudnn, const AttentionArgs& a, void* workspace,
                              std::size_t workspace_bytes, cudaStream_t stream) {
  const i64 stride = a.q_stride;
  if (a.key_index != nullptr || !a.causal || stride <= 1 || a.kv_tokens == 0 || a.kv_heads <= 0 ||
      a.heads % a.kv_heads != 0) {
    return false;
  }
  if (a.kv_stride == stride) {  // one diagonal in index space
    AttentionArgs diagonal = a;
    diagonal.q_start = floor_div(a.q_start - a.kv_start, stride);
    diagonal.kv_start = 0;
    diagonal.q_stride = 1;
    diagonal.kv_stride = 1;
    return cudnn.run(diagonal, workspace, workspace_bytes, stream);
  }
  if (a.kv_stride != 1 || a.out_f32 != nullptr || a.lse != nullptr || a.out == nullptr) return false;
  // The merges write the output rows in 16-byte vectors (cuDNN checks only the calls' own buffers).
  if (reinterpret_cast<std::uintptr_t>(a.out) % 16 != 0 || a.out_row_stride % 8 != 0 || a.head_dim_v % 8 != 0) {
    return false;
  }

  // Calls over the most whole KV-head groups whose merge buffers take at most half the workspace.
  const i64 group = a.heads / a.kv_heads;
  i64 kv_per_call = a.kv_heads;
  const auto fits = [&](i64 kv_heads) {
    return 2 * merge_buffers(nullptr, a.q_tokens, kv_heads * group, a.head_dim_v).bytes <=
           static_cast<i64>(workspace_bytes);
  };
  while (kv_per_call > 1 && (a.kv_heads % kv_per_call != 0 || !fits(kv_per_call))) --kv_per_call;
  if (!fits(kv_per_call)) return false;
  const i64 heads = kv_per_call * group;
  const MergeBuffers m = merge_buffers(workspace, a.q_tokens, heads, a.head_dim_v);
  void* cudnn_workspace = static_cast<char*>(workspace) + m.bytes;
  const auto cudnn_workspace_bytes = workspace_bytes - static_cast<std::size_t>(m.bytes);

  const i64 classes = std::min(stride, a.kv_tokens);  // residue classes that hold keys
  bool first_call = true;
  for (i64 b = 0; b < a.batch; ++b) {
    for (i64 kv0 = 0; kv0 < a.kv_heads; kv0 += kv_per_call) {
      const i64 h0 = kv0 * group;
      char* out = static_cast<char*>(a.out) + (b * a.q_tokens * a.out_row_stride + h0 * a.head_dim_v) * 2;
      for (i64 c = 0; c < classes; ++c) {
        // The first class's result is the running one; each later class's is merged into it, the last straight into
        // the output rows. With one class only, that class writes the output itself.
        const bool only = classes == 1;
        AttentionArgs part;
        part.q = static_cast<const char*>(a.q) + (b * a.q_tokens * a.q_row_stride + h0 * a.head_dim_qk) * 2;
        part.k = static_cast<const char*>(a.k) + ((b * a.kv_batch_rows + c) * a.k_row_stride + kv0 * a.head_dim_qk) * 2;
        part.v = static_cast<const char*>(a.v) + ((b * a.kv_batch_rows + c) * a.v_row_stride + kv0 * a.head_dim_v) * 2;
        part.q_row_stride = a.q_row_stride;
        part.k_row_stride = stride * a.k_row_stride;
        part.v_row_stride = stride * a.v_row_stride;
        part.out = only ? out : (c == 0 ? m.running : m.part);
        part.out_row_stride = only ? a.out_row_stride : heads * a.head_dim_v;
        part.lse = only ? nullptr : (c == 0 ? m.running_lse : m.part_lse);
        part.batch = 1;
        part.q_tokens = a.q_tokens;
        part.kv_tokens = (a.kv_tokens - c + stride - 1) / stride;
        part.kv_batch_rows = part.kv_tokens;
        part.heads = heads;
        part.kv_heads = kv_per_call;
        part.head_dim_qk = a.head_dim_qk;
        part.head_dim_v = a.head_dim_v;
        part.q_start = floor_div(a.q_start - a.kv_start - c, stride);
        part.causal = true;
        part.scale = a.scale;
        if (!cudnn.run(part, cudnn_workspace, cudnn_workspace_bytes, stream)) {
          // Every call has the shapes of the first one's classes: a decline can only come before `a.out` is written.
          PARATWIN_ASSERT(first_call, "cuDNN declined a strided-attention call after taking its first: {}",
                          cudnn.declined_reason());
          return false;
        }
        if (c == 0) continue;
        const bool last = c == classes - 1;
        launch_merge_bf16_attention(m.running, m.running_lse, m.part, m.part_lse, a.q_tokens, heads, a.head_dim_v,
                                    last ? out : m.running, last ? a.out_row_stride : heads * a.head_dim_v,
                                    last ? nullptr : m.running_lse, stream);
      }
      first_call = false;
    }
  }
  return true;
}

}  // namespace paratwin::cuda
