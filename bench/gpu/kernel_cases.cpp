#include "bench/gpu/kernel_cases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <tuple>
#include <utility>

#include "backend/cuda/attention_gemm.hpp"
#include "backend/cuda/fp8_gemm.hpp"
#include "backend/cuda/fp8_grouped_gemm.hpp"
#include "backend/cuda/indexer_score.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/sparse_mla_attention.hpp"
#include "backend/cuda_plan/grouped_gemm_tiles.hpp"
#include "backend/cuda_plan/moe_gemm_rule.hpp"
#include "bench/gpu/published_grouped_rates.hpp"

namespace paratwin::bench {

using i64 = std::int64_t;

KernelBench::KernelBench() {
  PARATWIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  PARATWIN_CUBLAS_CHECK(cublasCreate(&blas_));
  PARATWIN_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  ceilings_ = measure_ceilings(blas_, stream_);
}

KernelBench::~KernelBench() {
  cublasDestroy(blas_);
  cudaStreamDestroy(stream_);
}

double KernelBench::time(const std::function<void()>& launch, int timed, int warmup) {
  return median_seconds(stream_, launch, timed, warmup);
}

PairedSeconds KernelBench::time_against(const std::function<void()>& reference, const std::function<void()>& launch) {
  return median_seconds_in_turns(stream_, reference, launch);
}

void KernelBench::add_bytes(std::string kernel, const ModelSpec& m, std::string shape, double s, double bytes,
                            std::optional<double> target) {
  rows_.push_back({std::move(kernel), m.name, std::move(shape), s, bytes, false, bytes / s / ceilings_.copy_bytes_per_s,
                   target, "copy", "", std::nullopt, prompt_tokens_});
}

void KernelBench::add_layer_memory_kernel(std::string kernel, const ModelSpec& m, std::string shape, double s,
                                          double bytes) {
  constexpr double kTarget = 0.8;                                 // issue 6: of the 2 GiB copy's bandwidth
  const auto copy_bytes = static_cast<i64>(bytes / 2) / 16 * 16;  // read + written: the kernel's bytes
  DeviceBuffer src(copy_bytes), dst(copy_bytes);
  fill_random(src, copy_bytes / 2, seed(), stream_);
  const double copy_s = time([&] {
    PARATWIN_CUDA_CHECK(
        cudaMemcpyAsync(dst.get(), src.get(), static_cast<std::size_t>(copy_bytes), cudaMemcpyDeviceToDevice, stream_));
  });
  add_bytes(std::move(kernel), m, std::move(shape), s, bytes, kTarget);
  rows_.back().fraction_of_copy_at_size = (bytes / s) / (2.0 * static_cast<double>(copy_bytes) / copy_s);
}

void KernelBench::add_flops(std::string kernel, const ModelSpec& m, std::string shape, double s, double flops,
                            std::string anchor, std::optional<double> target) {
  rows_.push_back({std::move(kernel), m.name, std::move(shape), s, flops, true, flops / s / ceilings_.gemm_flops_per_s,
                   target, "GEMM", std::move(anchor), std::nullopt, prompt_tokens_});
}

namespace {

// `gemm`'s operand pointer table (GroupedGemm::operand_addresses) with buffer id i at `buffers[i]`.
std::vector<void*> pointer_table(const cuda::GroupedGemm& gemm, const cuda::GroupedGemm::Operands& operands,
                                 const std::vector<void*>& buffers) {
  std::vector<void*> table;
  for (const auto& addr : gemm.operand_addresses(operands)) {
    table.push_back(static_cast<char*>(buffers[static_cast<std::size_t>(addr.buffer)]) + addr.offset_bytes);
  }
  return table;
}

}  // namespace

std::vector<int> KernelBench::random_ints(i64 count, int bound) {
  std::mt19937_64 rng(seed());
  std::uniform_int_distribution<int> pick(0, bound - 1);
  std::vector<int> v(static_cast<std::size_t>(count));
  for (auto& x : v) x = pick(rng);
  return v;
}

// Norm, rotary, activation and residual: issue 6 asks ≥ 80 % of the copy bandwidth.
void KernelBench::memory_kernels(const ModelSpec& m, i64 tokens) {
  const i64 H = m.hidden_size;
  {
    DeviceBuffer x(tokens * H * 2), y(tokens * H * 2), w(H * 2);
    fill_random(x, tokens * H, seed(), stream_);
    fill_random(w, H, seed(), stream_);
    const double s =
        time([&] { cuda::launch_rmsnorm(x.get(), y.get(), w.get(), tokens, H, 1, H, nullptr, 1e-6f, stream_); });
    add_layer_memory_kernel("rmsnorm", m, fmt::format("{} x {}", tokens, H), s,
                            2.0 * static_cast<double>(tokens * H * 2));
    const double a = time([&] { cuda::launch_add(y.get(), x.get(), tokens * H, stream_); });
    add_layer_memory_kernel("add (residual)", m, fmt::format("{} x {}", tokens, H), a,
                            3.0 * static_cast<double>(tokens * H * 2));
    // The two fused (the layers' form, models/builders ResidualStream): read the residual and the update, write the
    // new residual and the normed rows, in one launch.
    DeviceBuffer normed(tokens * H * 2);
    const double f =
        time([&] { cuda::launch_add_rmsnorm(x.get(), y.get(), normed.get(), w.get(), tokens, H, 1e-6f, stream_); });
    add_layer_memory_kernel("add_rmsnorm", m, fmt::format("{} x {}", tokens, H), f,
                            4.0 * static_cast<double>(tokens * H * 2));
  }
  {
    // Rotary on the query and key heads of a QKV row (MLA: the 64 rope dims of each of the 128 query heads, packed).
    const bool mla = m.mla.has_value();
    const i64 dim = mla ? m.mla->qk_rope_head_dim : m.head_dim;
    const i64 heads = mla ? m.num_attention_heads : m.num_attention_heads + m.num_kv_heads;
    const i64 row = mla ? heads * dim : (m.num_attention_heads + 2 * m.num_kv_heads) * dim;
    DeviceBuffer x(tokens * row * 2);
    fill_random(x, tokens * row, seed(), stream_);
    const double s = time([&] { cuda::launch_rope(x.get(), tokens, heads, dim, row, nullptr, 10000.0f, stream_); });
    add_layer_memory_kernel("rope", m, fmt::format("{} x {} heads x {}", tokens, heads, dim), s,
                            2.0 * static_cast<double>(tokens * heads * dim * 2));
  }
  {
    // SwiGLU on the rows the FFN sees: the experts' rows (tokens · top-k) for MoE models, else the dense FFN.
    const i64 rows = m.moe ? tokens * m.moe->experts_per_token : tokens;
    const i64 ffn = m.moe ? m.moe->expert_intermediate_size : m.intermediate_size;
    DeviceBuffer gu(rows * 2 * ffn * 2), out(rows * ffn * 2);
    fill_random(gu, rows * 2 * ffn, seed(), stream_);
    const double s = time([&] { cuda::launch_silu_mul(gu.get(), out.get(), rows, ffn, stream_); });
    add_layer_memory_kernel("silu_mul", m, fmt::format("{} x {}", rows, ffn), s,
                            3.0 * static_cast<double>(rows * ffn * 2));
  }
}

// Router, permute (gather_rows), unpermute and combine at tokens · top-k expert rows. No issue target: the fraction of
// the copy bandwidth says how far each is from moving its bytes once.
void KernelBench::moe_kernels(const ModelSpec& m, i64 tokens) {
  if (!m.moe) return;
  const i64 H = m.hidden_size, E = m.moe->num_experts, K = m.moe->experts_per_token, rows = tokens * K;
  {
    DeviceBuffer logits(tokens * E * 2), ids(tokens * K * 4), w(tokens * K * 4);
    fill_random(logits, tokens * E, seed(), stream_);
    const double s =
        time([&] { cuda::launch_moe_route(logits.get(), ids.as<int>(), w.as<float>(), tokens, E, K, false, stream_); });
    add_bytes("moe_route", m, fmt::format("{} x {} experts, top-{}", tokens, E, K), s,
              static_cast<double>(tokens * E * 2 + tokens * K * 8));
  }
  DeviceBuffer x(tokens * H * 2), expert_rows(rows * H * 2), out(tokens * H * 2), weights(rows * 4);
  fill_random(x, tokens * H, seed(), stream_);
  fill_random(expert_rows, rows * H, seed(), stream_);
  fill_random(weights, rows, seed(), stream_, true, 0.5f);
  {
    DeviceBuffer map(rows * 4);
    upload(map, random_ints(rows, static_cast<int>(tokens)));
    const double s =
        time([&] { cuda::launch_gather_rows(x.get(), expert_rows.get(), rows, H * 2, map.as<int>(), stream_); });
    add_bytes("gather_rows (permute)", m, fmt::format("{} rows x {}", rows, H), s,
              static_cast<double>(2 * rows * H * 2 + rows * 4));
  }
  {
    const double s = time(
        [&] { cuda::launch_moe_unpermute(expert_rows.get(), weights.as<float>(), out.get(), tokens, K, H, stream_); });
    add_bytes("moe_unpermute", m, fmt::format("{} x top-{} x {}", tokens, K, H), s,
              static_cast<double>(rows * H * 2 + rows * 4 + tokens * H * 2));
  }
  {
    std::vector<int> perm(static_cast<std::size_t>(rows));
    for (i64 i = 0; i < rows; ++i) perm[static_cast<std::size_t>(i)] = static_cast<int>(i);
    std::shuffle(perm.begin(), perm.end(), std::mt19937_64(seed()));
    DeviceBuffer map(rows * 4);
    upload(map, perm);
    const double s = time([&] {
      cuda::launch_moe_combine(expert_rows.get(), map.as<int>(), weights.as<float>(), out.get(), tokens, K, H, stream_);
    });
    add_bytes("moe_combine", m, fmt::format("{} x top-{} x {}", tokens, K, H), s,
              static_cast<double>(rows * H * 2 + rows * 8 + tokens * H * 2));
  }
}

// Causal prefill attention: the tensor-core path (attention_gemm) over the whole prompt, and the reference kernel on
// the last queries of the same prompt (it is ~50× slower; the full prompt would take minutes).
void KernelBench::attention(const ModelSpec& m, i64 tokens) {
  const bool mla = m.mla.has_value();
  const i64 heads = m.num_attention_heads, kv_heads = mla ? heads : m.num_kv_heads;
  const i64 dqk = m.qk_head_dim(), dv = m.v_head_dim();
  DeviceBuffer q(tokens * heads * dqk * 2), k(tokens * kv_heads * dqk * 2), v(tokens * kv_heads * dv * 2);
  DeviceBuffer out(tokens * heads * dv * 2), workspace(static_cast<i64>(cuda::kAttentionWorkspaceBytes));
  fill_random(q, tokens * heads * dqk, seed(), stream_);
  fill_random(k, tokens * kv_heads * dqk, seed(), stream_);
  fill_random(v, tokens * kv_heads * dv, seed(), stream_);
  cuda::AttentionArgs a;
  a.q = q.get();
  a.k = k.get();
  a.v = v.get();
  a.out = out.get();
  a.q_row_stride = heads * dqk;
  a.k_row_stride = kv_heads * dqk;
  a.v_row_stride = kv_heads * dv;
  a.out_row_stride = heads * dv;
  a.q_tokens = tokens;
  a.kv_tokens = tokens;
  a.kv_batch_rows = tokens;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.head_dim_qk = dqk;
  a.head_dim_v = dv;
  a.scale = 1.0f / std::sqrt(static_cast<float>(dqk));
  const auto pairs = [](i64 first, i64 count) {  // visible (query, key) pairs of queries first .. first+count-1
    return static_cast<double>(count) * static_cast<double>(2 * first + count + 1) / 2.0;
  };
  const double per_pair = 2.0 * static_cast<double>(heads * (dqk + dv));
  const std::string shape = fmt::format("{} tok, {}/{} heads, d {}/{}", tokens, heads, kv_heads, dqk, dv);
  const std::string anchor =
      mla ? "FlashMLA 640 (H800); issue 6 >= 450" : "FA3 616 / cuDNN 539 (H100 16K); issue 6 >= 450";
  const double target = 450e12 / ceilings_.gemm_flops_per_s;
  const double s =
      time([&] { cuda::attention_gemm(a, blas_, workspace.get(), cuda::kAttentionWorkspaceBytes, stream_); }, 10, 1);
  add_flops("attention_gemm (causal)", m, shape, s, per_pair * pairs(0, tokens), anchor, target);

  const i64 last = mla ? 256 : 512;  // reference kernel: the last queries only
  auto r = a;
  r.q = static_cast<const char*>(q.get()) + (tokens - last) * heads * dqk * 2;
  r.q_tokens = last;
  r.q_start = tokens - last;
  const double rs = time([&] { cuda::launch_attention(r, stream_); }, 10, 1);
  add_flops("attention (reference)", m, fmt::format("last {} q of {}", last, shape), rs,
            per_pair * pairs(tokens - last, last), anchor, target);
}

double KernelBench::fp8_gemm_flops_per_s() {
  if (fp8_gemm_flops_per_s_) return *fp8_gemm_flops_per_s_;
  cublasLtHandle_t lt = nullptr;
  PARATWIN_CUBLAS_CHECK(cublasLtCreate(&lt));
  const std::unique_ptr<cublasLtContext, decltype(&cublasLtDestroy)> lt_owner(lt, &cublasLtDestroy);
  DeviceBuffer workspace(static_cast<i64>(cuda::kLtWorkspaceBytes));
  const i64 n = 8192;
  // One scale buffer each: cuBLASLt refuses (at launch, "not supported") a scale pointer that is not 16-byte aligned,
  // so W's scale cannot sit 4 bytes after X's.
  DeviceBuffer x(n * n), w(n * n), y(n * n * 2), x_scale(4), w_scale(4);
  cuda::launch_fill_random_fp8(x.get(), n * n, seed(), 1.0f, stream_);
  cuda::launch_fill_random_fp8(w.get(), n * n, seed(), 1.0f, stream_);
  // Positive scales in [0.5, 1.5), never zero.
  for (DeviceBuffer* scale : {&x_scale, &w_scale}) {
    cuda::launch_fill_random(scale->get(), true, 1, 1, 0, nullptr, 1, seed(), 0.5f, 1.0f, stream_);
  }
  cuda::Fp8Gemm gemm(cuda::Fp8Scaling::kPerTensor, n, n);
  const cuda::Fp8GemmLaunch launch{lt, workspace.get(), cuda::kLtWorkspaceBytes, stream_};
  const cuda::Fp8GemmOperands operands{x.get(), x_scale.as<float>(), w.get(), w_scale.as<float>(), y.get()};
  const double s = time([&] { gemm.run(launch, operands, n); });
  fp8_gemm_flops_per_s_ = 2.0 * static_cast<double>(n * n * n) / s;
  return *fp8_gemm_flops_per_s_;
}

// DeepSeek-V3.2's DSA: indexer scores and top-k over a 16K context, and sparse attention (MQA over the 576-dim latent,
// 2048 keys per query: the reference kernel and the tensor-core one). Issue 6: the indexer at ≥ 60 % of the GEMM rate
// (bf16 kernels against the bf16 GEMM ceiling, the fp8 kernel against the fp8 one, a per-tensor-scaled fp8 cuBLASLt
// GEMM of 8192³ measured in the same run and shown as its own row).
void KernelBench::dsa(const ModelSpec& m, i64 tokens) {
  if (!m.indexer || !m.mla) return;
  const i64 heads = m.indexer->heads, dim = m.indexer->head_dim, topk = m.indexer->topk;
  {
    const i64 queries = tokens;  // the whole prompt: the indexer runs on the tensor cores
    DeviceBuffer q(queries * heads * dim * 2), k(tokens * dim * 2), w(queries * heads * 2), out(queries * tokens * 4);
    fill_random(q, queries * heads * dim, seed(), stream_);
    fill_random(k, tokens * dim, seed(), stream_);
    fill_random(w, queries * heads, seed(), stream_);
    const double pairs = static_cast<double>(queries) * static_cast<double>(2 * tokens - queries + 1) / 2.0;
    // The kernel launch_indexer_score picks (wgmma on Hopper), then the mma.sync kernel it falls back to.
    std::vector<cuda::IndexerKernel> kernels = {
        cuda::indexer_kernel_for(q.get(), k.get(), queries, tokens, heads, dim)};
    if (kernels.front() != cuda::IndexerKernel::kMmaSync) kernels.push_back(cuda::IndexerKernel::kMmaSync);
    for (const auto kernel : kernels) {
      bool launched = true;
      const double s = time(
          [&] {
            launched = cuda::launch_indexer_score_on(kernel, q.get(), k.get(), w.get(), out.as<float>(), queries,
                                                     tokens, heads, dim, tokens - queries, 1, true, stream_);
          },
          10, 1);
      if (!launched) {
        paratwin::fail("indexer_score: the {} kernel does not take the benchmark's shape", cuda::to_string(kernel));
      }
      add_flops(fmt::format("indexer_score ({})", cuda::to_string(kernel)), m,
                fmt::format("{} q x {} keys causal, {} heads x {}", queries, tokens, heads, dim), s,
                2.0 * static_cast<double>(heads * dim) * pairs, "issue 6 >= 60% of GEMM", 0.6);
    }
  }
  {
    // The schedule's form (idx.score is fp8): e4m3 q and k, one fp32 scale per key, fp32 head weights (q's scales
    // folded in). Only on the Hopper kernel: the fp8 reference kernel would take minutes here.
    const i64 queries = tokens;
    DeviceBuffer q(queries * heads * dim), k(tokens * dim), k_scale(tokens * 4), w(queries * heads * 4),
        out(queries * tokens * 4);
    cuda::launch_fill_random_fp8(q.get(), queries * heads * dim, seed(), 1.0f, stream_);
    cuda::launch_fill_random_fp8(k.get(), tokens * dim, seed(), 1.0f, stream_);
    // Positive key scales in [0.5, 1.5), never zero; head weights in [−1, 1).
    cuda::launch_fill_random(k_scale.get(), true, 1, tokens, 0, nullptr, tokens, seed(), 0.5f, 1.0f, stream_);
    fill_random(w, queries * heads, seed(), stream_, true);
    const auto kernel = cuda::indexer_fp8_kernel_for(q.get(), k.get(), queries, tokens, heads, dim);
    if (kernel == cuda::IndexerKernel::kWgmma) {
      bool launched = true;
      const double s = time(
          [&] {
            launched = cuda::launch_indexer_score_fp8_on(kernel, q.get(), k.get(), k_scale.as<float>(), w.as<float>(),
                                                         out.as<float>(), queries, tokens, heads, dim, tokens - queries,
                                                         1, true, stream_) &&
                       launched;
          },
          10, 1);
      if (!launched) paratwin::fail("indexer_score fp8: the wgmma kernel declined the benchmark's operands");
      const double pairs = static_cast<double>(queries) * static_cast<double>(2 * tokens - queries + 1) / 2.0;
      const double flops = 2.0 * static_cast<double>(heads * dim) * pairs;
      const double ceiling = fp8_gemm_flops_per_s();
      rows_.push_back({"indexer_score (fp8 wgmma)", m.name,
                       fmt::format("{} q x {} keys causal, {} heads x {}", queries, tokens, heads, dim), s, flops, true,
                       flops / s / ceiling, 0.6, "fp8 GEMM", "issue 6 >= 60% of fp8 GEMM", std::nullopt,
                       prompt_tokens_});
      const double gemm_s = 2.0 * 8192.0 * 8192.0 * 8192.0 / ceiling;
      rows_.push_back({"dense fp8 GEMM 8192^3 (ceiling)", m.name, "per-tensor scales, cuBLASLt", gemm_s,
                       2.0 * 8192.0 * 8192.0 * 8192.0, true, 1.0, std::nullopt, "fp8 GEMM", "", std::nullopt,
                       prompt_tokens_});
    }
  }
  {
    const i64 rows = tokens;  // one row per query of the prompt
    DeviceBuffer scores(rows * tokens * 4), idx(rows * topk * 4);
    fill_random(scores, rows * tokens, seed(), stream_, true);
    const double s =
        time([&] { cuda::launch_topk(scores.as<float>(), idx.as<int>(), rows, tokens, topk, {}, stream_); });
    add_bytes("topk", m, fmt::format("{} rows x {}, k {}", rows, tokens, topk), s,
              static_cast<double>(rows * tokens * 4 + rows * topk * 4));
    // The layer's form: row i holds the scores of query i's causal prefix (i + 1 keys), and only those are read.
    const cuda::TopkRowLengths causal{rows, 0, 1};
    const double c =
        time([&] { cuda::launch_topk(scores.as<float>(), idx.as<int>(), rows, tokens, topk, causal, stream_); });
    const double causal_values = static_cast<double>(rows) * static_cast<double>(rows + 1) / 2.0;
    add_bytes("topk (causal rows)", m, fmt::format("{} rows x 1..{}, k {}", rows, tokens, topk), c,
              causal_values * 4.0 + static_cast<double>(rows * topk * 4));
  }
  {
    const i64 queries = 2048, heads_q = m.num_attention_heads;
    const i64 dqk = m.mla->latent_dim(), dv = m.mla->kv_lora_rank;
    DeviceBuffer q(queries * heads_q * dqk * 2), kv(tokens * dqk * 2), out(queries * heads_q * dv * 2);
    fill_random(q, queries * heads_q * dqk, seed(), stream_);
    fill_random(kv, tokens * dqk, seed(), stream_);
    std::vector<int> keys(static_cast<std::size_t>(queries * topk));
    std::mt19937_64 rng(seed());
    for (i64 i = 0; i < queries; ++i) {
      std::uniform_int_distribution<int> pick(0, static_cast<int>(tokens - queries + i));
      for (i64 j = 0; j < topk; ++j) keys[static_cast<std::size_t>(i * topk + j)] = pick(rng);
    }
    DeviceBuffer key_index(queries * topk * 4);
    upload(key_index, keys);
    cuda::AttentionArgs a;
    a.q = q.get();
    a.k = kv.get();
    a.v = kv.get();  // the latent's first kv_lora_rank dims are the value
    a.out = out.get();
    a.q_row_stride = heads_q * dqk;
    a.k_row_stride = dqk;
    a.v_row_stride = dqk;
    a.out_row_stride = heads_q * dv;
    a.q_tokens = queries;
    a.kv_tokens = tokens;
    a.kv_batch_rows = tokens;
    a.heads = heads_q;
    a.kv_heads = 1;
    a.head_dim_qk = dqk;
    a.head_dim_v = dv;
    a.q_start = tokens - queries;
    a.scale = 1.0f / std::sqrt(static_cast<float>(m.qk_head_dim()));
    a.key_index = key_index.as<int>();
    a.keys_per_query = topk;
    const double s = time([&] { cuda::launch_attention(a, stream_); }, 10, 1);
    add_flops("attention sparse (reference)", m,
              fmt::format("last {} q of {}, {} keys, {} heads, d {}/{}", queries, tokens, topk, heads_q, dqk, dv), s,
              2.0 * static_cast<double>(queries * topk * heads_q * (dqk + dv)), "FlashMLA 640 (H800)");
    // The kernel launch_sparse_mla_attention picks (wgmma on Hopper), then the mma.sync kernel it falls back to.
    std::vector<cuda::SparseMlaKernel> kernels = {cuda::sparse_mla_kernel_for(a)};
    if (kernels.front() != cuda::SparseMlaKernel::kMmaSync) kernels.push_back(cuda::SparseMlaKernel::kMmaSync);
    for (const auto kernel : kernels) {
      bool launched = true;
      const double tc = time([&] { launched = cuda::launch_sparse_mla_attention_on(kernel, a, stream_); });
      if (!launched) {
        paratwin::fail("attention sparse: the {} kernel does not take the benchmark's shape", cuda::to_string(kernel));
      }
      add_flops(fmt::format("attention sparse ({})", cuda::to_string(kernel)), m,
                fmt::format("last {} q of {}, {} keys, {} heads, d {}/{}", queries, tokens, topk, heads_q, dqk, dv), tc,
                2.0 * static_cast<double>(queries * topk * heads_q * (dqk + dv)), "FlashMLA 640 (H800)");
    }
  }
}

// The dense projections of one layer at TP 1 (cuBLAS, as the backend calls it).
// DeepSeek-V3.2's absorbed MLA (attention TP 1: every head on the rank) multiplies each head's `tokens` query rows by
// its own small weight before and after the sparse attention: q_nope [T × 128] · W_UK [128 × 512] and the latent
// output [T × 512] · W_UV [512 × 128]. Memory-bound (~100 flop per byte), so the rows give bytes against the copy.
void KernelBench::mla_absorb_gemms(const ModelSpec& m, i64 tokens) {
  if (!m.indexer || !m.mla) return;  // the absorbed form at prefill is DSA's (models/builders/attention_tp.cpp)
  const i64 heads = m.num_attention_heads;
  const i64 nope = m.mla->qk_nope_head_dim, latent = m.mla->kv_lora_rank, v_dim = m.mla->v_head_dim;
  const std::vector<i64> group_rows(static_cast<std::size_t>(heads), tokens);
  const i64 rows = heads * tokens;
  for (const auto& [name, n, k] :
       {std::tuple<const char*, i64, i64>{"q_absorb", latent, nope}, {"v_unabsorb", v_dim, latent}}) {
    DeviceBuffer x(rows * k * 2), y(rows * n * 2), w(heads * k * n * 2);
    fill_random(x, rows * k, seed(), stream_);
    fill_random(w, heads * k * n, seed(), stream_, false, 1.0f / std::sqrt(static_cast<float>(k)));
    const cuda::GroupedGemm gemm(group_rows, n, k);
    cuda::GroupedGemm::Operands operands{0, 1, {}};
    for (i64 g = 0; g < heads; ++g) operands.weights.push_back({2, g * k * n * 2});
    const std::vector<void*> table = pointer_table(gemm, operands, {x.get(), y.get(), w.get()});
    const double bytes = 2.0 * static_cast<double>(rows * k + heads * k * n + rows * n);
    const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(n) * static_cast<double>(k);
    const std::string shape =
        fmt::format("{} heads x {} tok: [{} x {}] . [{} x {}] per head", heads, tokens, tokens, k, k, n);
    struct Variant {
      const char* label;
      cuda::GroupedGemmMethod method;
      const cuda::GemmStreams* side;
    };
    const Variant variants[] = {{"batched, engine", cuda::GroupedGemmMethod::kStridedBatched, &side4_},
                                {"4 streams", cuda::GroupedGemmMethod::kConcurrent, &side4_},
                                {"1 stream", cuda::GroupedGemmMethod::kSequential, nullptr}};
    for (const auto& v : variants) {
      cuda::GroupedGemm::Launch launch;
      launch.blas = blas_;
      launch.stream = stream_;
      launch.side = v.side;
      launch.host_table = table.data();
      bool as_asked = true;
      const double s = time([&] { as_asked = gemm.run(launch, v.method) && as_asked; });
      add_bytes(fmt::format("MLA {} ({})", name, v.label), m, shape, s, bytes);
      rows_.back().anchor =
          fmt::format("{:.1f} TFLOP/s{}", flops / s / 1e12, as_asked ? "" : " (fell back to side streams)");
    }
  }
}

void KernelBench::dense_gemms(const ModelSpec& m, i64 tokens) {
  const i64 H = m.hidden_size;
  std::vector<std::pair<std::string, std::pair<i64, i64>>> shapes;  // name, (n, k)
  if (m.mla) {
    // fp8 models' q_b_proj is measured in bf16 by fp8_gemms, beside its fp8 forms.
    if (m.weight_dtype != DType::kFp8) {
      shapes.push_back({"q_b_proj", {m.num_attention_heads * m.qk_head_dim(), m.mla->q_lora_rank}});
    }
  } else {
    shapes.push_back({"qkv_proj", {(m.num_attention_heads + 2 * m.num_kv_heads) * m.head_dim, H}});
  }
  if (!m.moe) shapes.push_back({"gate_up_proj", {2 * m.intermediate_size, H}});
  for (const auto& [name, nk] : shapes) {
    const auto [n, k] = nk;
    DeviceBuffer x(tokens * k * 2), w(k * n * 2), y(tokens * n * 2);
    fill_random(x, tokens * k, seed(), stream_);
    fill_random(w, k * n, seed(), stream_, false, 1.0f / std::sqrt(static_cast<float>(k)));
    const double s = time([&] { dense_gemm(blas_, x.get(), w.get(), y.get(), tokens, n, k); });
    add_flops("GEMM " + name, m, fmt::format("{} x {} x {}", tokens, n, k), s,
              2.0 * static_cast<double>(tokens) * static_cast<double>(n * k), "");
  }
}

// DeepSeek-V3.2's fp8 projections at TP 1 through fp8_gemm.hpp, per-tensor and block-scaled (what the backend runs),
// with the bf16 GEMM of the same shape. Fractions are of the bf16 GEMM ceiling: H200's dense fp8 peak is twice its
// bf16 peak, so an fp8 GEMM can reach ~2.
void KernelBench::fp8_gemms(const ModelSpec& m, i64 tokens) {
  if (m.weight_dtype != DType::kFp8 || !m.mla) return;
  cublasLtHandle_t lt = nullptr;
  PARATWIN_CUBLAS_CHECK(cublasLtCreate(&lt));
  const std::unique_ptr<cublasLtContext, decltype(&cublasLtDestroy)> lt_owner(lt, &cublasLtDestroy);
  DeviceBuffer workspace(static_cast<i64>(cuda::kLtWorkspaceBytes));
  const cuda::Fp8GemmLaunch launch{lt, workspace.get(), cuda::kLtWorkspaceBytes, stream_};
  const std::tuple<const char*, i64, i64> shapes[] = {
      {"q_b_proj", m.num_attention_heads * m.qk_head_dim(), m.mla->q_lora_rank},
      {"o_proj", m.hidden_size, m.num_attention_heads * m.mla->v_head_dim},
  };
  for (const auto& [name, n, k] : shapes) {
    const std::string shape = fmt::format("{} x {} x {}", tokens, n, k);
    const double flops = 2.0 * static_cast<double>(tokens) * static_cast<double>(n * k);
    {
      DeviceBuffer x(tokens * k * 2), w(k * n * 2), y(tokens * n * 2);
      fill_random(x, tokens * k, seed(), stream_);
      fill_random(w, k * n, seed(), stream_, false, 1.0f / std::sqrt(static_cast<float>(k)));
      const double s = time([&] { dense_gemm(blas_, x.get(), w.get(), y.get(), tokens, n, k); });
      add_flops(fmt::format("GEMM {} bf16", name), m, shape, s, flops, "");
    }
    DeviceBuffer x(tokens * k), w(n * k), y(tokens * n * 2);
    cuda::launch_fill_random_fp8(x.get(), tokens * k, seed(), 1.0f, stream_);
    cuda::launch_fill_random_fp8(w.get(), n * k, seed(), 1.0f, stream_);
    for (const auto scaling : {cuda::Fp8Scaling::kPerTensor, cuda::Fp8Scaling::kBlock}) {
      const i64 xs_count = cuda::fp8_activation_scale_count(scaling, tokens, k);
      const i64 ws_count = cuda::fp8_weight_scale_count(scaling, n, k);
      DeviceBuffer xs(xs_count * 4), ws(ws_count * 4);
      // Positive scales in [0.5, 1.5), never zero.
      cuda::launch_fill_random(xs.get(), true, 1, xs_count, 0, nullptr, xs_count, seed(), 0.5f, 1.0f, stream_);
      cuda::launch_fill_random(ws.get(), true, 1, ws_count, 0, nullptr, ws_count, seed(), 0.5f, 1.0f, stream_);
      cuda::Fp8Gemm gemm(scaling, n, k);
      const cuda::Fp8GemmOperands operands{x.get(), xs.as<float>(), w.get(), ws.as<float>(), y.get()};
      const double s = time([&] { gemm.run(launch, operands, tokens); });
      const bool block = scaling == cuda::Fp8Scaling::kBlock;
      add_flops(fmt::format("GEMM {} fp8 {}", name, block ? "block-scaled" : "per-tensor"), m, shape, s, flops,
                block ? "1x128 act, 128x128 weight scales (backend)" : "one scale per tensor");
    }
  }
}

std::vector<i64> KernelBench::routed_group_rows(const ModelSpec& m, i64 tokens, int ep) {
  const i64 E = m.moe->num_experts, K = m.moe->experts_per_token, local = E / ep;
  std::vector<i64> group_rows(static_cast<std::size_t>(local), 0);
  std::mt19937_64 rng(seed());
  std::vector<int> experts(static_cast<std::size_t>(E));
  for (i64 e = 0; e < E; ++e) experts[static_cast<std::size_t>(e)] = static_cast<int>(e);
  for (i64 t = 0; t < tokens; ++t) {
    for (i64 j = 0; j < K; ++j) {  // partial Fisher-Yates: K distinct experts
      std::uniform_int_distribution<i64> pick(j, E - 1);
      std::swap(experts[static_cast<std::size_t>(j)], experts[static_cast<std::size_t>(pick(rng))]);
      if (experts[static_cast<std::size_t>(j)] < local)
        ++group_rows[static_cast<std::size_t>(experts[static_cast<std::size_t>(j)])];
    }
  }
  return group_rows;
}

// The experts' gate_up and down GEMMs of `tokens` tokens routed uniformly (top-k distinct experts per token), as seen
// by the local experts of one EP rank, by every launch method of grouped_gemm.hpp, and a dense GEMM of the same total
// rows × n × k. Issue 6: the backend's method ≥ 0.8 × dense.
void KernelBench::grouped_gemms(const ModelSpec& m, i64 tokens, int ep) {
  if (!m.moe) return;
  const i64 local = m.moe->num_experts / ep;
  const auto group_rows = routed_group_rows(m, tokens, ep);
  i64 rows = 0;
  for (const i64 r : group_rows) rows += r;
  const i64 ffn = m.moe->expert_intermediate_size, H = m.hidden_size;
  for (const auto& [name, n, k] : {std::tuple<const char*, i64, i64>{"gate_up", 2 * ffn, H}, {"down", H, ffn}}) {
    DeviceBuffer x(rows * k * 2), y(rows * n * 2), w(local * k * n * 2);
    fill_random(x, rows * k, seed(), stream_);
    fill_random(w, local * k * n, seed(), stream_, false, 1.0f / std::sqrt(static_cast<float>(k)));
    cuda::GroupedGemm::Operands operands{0, 1, {}};
    for (i64 g = 0; g < local; ++g) operands.weights.push_back({2, g * k * n * 2});
    const std::vector<void*> base = {x.get(), y.get(), w.get()};  // the buffer ids of `operands`
    // Every method is timed in turns with the dense GEMM (time_against), which gives its fraction; the dense row is
    // the dense GEMM timed alone, as before the turns, its note the median over the pairings.
    const auto dense = [&] { dense_gemm(blas_, x.get(), w.get(), y.get(), rows, n, k); };
    const double dense_alone_s = time(dense);
    std::vector<double> dense_runs_s;
    const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(n) * static_cast<double>(k);
    const std::string shape = fmt::format("{} tok EP {}: {} experts, {} rows (~{}/expert), n {}, k {}", tokens, ep,
                                          local, rows, rows / local, n, k);
    struct Variant {
      const char* label;
      cuda::GroupedGemmMethod method;
      const cuda::GemmStreams* side;
      bool backend;  // what --moe-gemm auto runs here: the method issue 6's target applies to
      i64 chunk_rows = cuda::kGroupedChunkRows;
    };
    // What `paratwin run --moe-gemm auto` runs at this shape on a Hopper GPU (cuda_plan::auto_moe_gemm_method).
    cuda_plan::MoeGemmShape rule_shape;
    rule_shape.rows_per_expert = static_cast<double>(rows) / static_cast<double>(local);
    rule_shape.n = n;
    rule_shape.k = k;
    rule_shape.compute_capability = cuda_plan::kHopperKernelComputeCapability;
    const bool engine_kernel = cuda_plan::auto_moe_gemm_method(rule_shape) == cuda_plan::MoeGemmMethod::kHopperKernel;
    const Variant variants[] = {
        {"kernel", cuda::GroupedGemmMethod::kPersistentKernel, &side4_, engine_kernel},
        {"chunks of 128", cuda::GroupedGemmMethod::kChunkedBatched, &side4_, false, 128},
        {"chunks of 64", cuda::GroupedGemmMethod::kChunkedBatched, &side4_, false, 64},
        {"4 streams", cuda::GroupedGemmMethod::kConcurrent, &side4_, !engine_kernel && cuda::kGemmSideStreams == 4},
        {"8 streams", cuda::GroupedGemmMethod::kConcurrent, &side8_, !engine_kernel && cuda::kGemmSideStreams == 8},
        {"1 stream", cuda::GroupedGemmMethod::kSequential, nullptr, false},
        {"cuBLAS grouped", cuda::GroupedGemmMethod::kCublasGrouped, nullptr, false},
    };
    for (const auto& v : variants) {
      const cuda::GroupedGemm gemm(group_rows, n, k, v.chunk_rows);
      const std::vector<void*> table = pointer_table(gemm, operands, base);
      DeviceBuffer device_table(static_cast<i64>(table.size() * sizeof(void*)));
      PARATWIN_CUDA_CHECK(
          cudaMemcpy(device_table.get(), table.data(), table.size() * sizeof(void*), cudaMemcpyHostToDevice));
      const auto& schedule = gemm.kernel_schedule();
      DeviceBuffer device_schedule(static_cast<i64>(std::max<std::size_t>(schedule.size(), 1) * sizeof(int)));
      PARATWIN_CUDA_CHECK(
          cudaMemcpy(device_schedule.get(), schedule.data(), schedule.size() * sizeof(int), cudaMemcpyHostToDevice));
      const auto maps = gemm.kernel_tensor_maps(table.data());
      DeviceBuffer device_maps(static_cast<i64>(std::max<std::size_t>(maps.size(), 1) * sizeof(CUtensorMap)));
      PARATWIN_CUDA_CHECK(
          cudaMemcpy(device_maps.get(), maps.data(), maps.size() * sizeof(CUtensorMap), cudaMemcpyHostToDevice));
      cuda::GroupedGemm::Launch launch;
      launch.blas = blas_;
      launch.stream = stream_;
      launch.side = v.side;
      launch.device_table = device_table.as<void*>();
      launch.host_table = table.data();
      launch.device_schedule = device_schedule.as<int>();
      if (!maps.empty()) launch.device_tensor_maps = device_maps.as<CUtensorMap>();
      bool as_asked = true;
      const auto timed = time_against(dense, [&] { as_asked = gemm.run(launch, v.method) && as_asked; });
      const double s = timed.launch_s, dense_s = timed.reference_s;
      dense_runs_s.push_back(dense_s);
      std::optional<double> target;
      if (v.backend) target = 0.8;
      std::string note = fmt::format("dense same size {:.0f} TFLOP/s in turns ({:.0f} alone){}", flops / dense_s / 1e12,
                                     flops / dense_alone_s / 1e12, as_asked ? "" : " (fell back)");
      if (v.method == cuda::GroupedGemmMethod::kPersistentKernel) {  // what its tiles' padding costs
        note += fmt::format(", tiles compute {:.2f} x the product", cuda_plan::grouped_kernel_padding(group_rows, n));
      }
      rows_.push_back({fmt::format("grouped GEMM {} ({})", name, v.label), m.name, shape, s, flops, true, dense_s / s,
                       target, "dense", note, std::nullopt, prompt_tokens_});
    }
    add_flops(fmt::format("dense GEMM {} same size", name), m, fmt::format("{} x {} x {}", rows, n, k), dense_alone_s,
              flops,
              fmt::format("alone; in turns with the methods {:.0f} TFLOP/s (median of {})",
                          flops / median_of(dense_runs_s) / 1e12, dense_runs_s.size()));
  }
}

// DeepSeek-V3.2's fp8 experts (block scales, one cuBLASLt call per expert: fp8_grouped_gemm.hpp) as the engine runs
// them, on the backend's 4 side streams (each with its own cuBLASLt workspace), on 8 and on one stream, and through
// the backend's persistent fp8 kernel (Fp8GroupedGemm::run_kernel), against the dense block-scaled fp8 GEMM of the
// same rows × n × k, routed as grouped_gemms routes. Issue 6: ≥ 0.8 × dense.
void KernelBench::fp8_grouped_gemms(const ModelSpec& m, i64 tokens, int ep) {
  if (!m.moe || m.weight_dtype != DType::kFp8) return;
  const i64 local = m.moe->num_experts / ep;
  const auto group_rows = routed_group_rows(m, tokens, ep);
  cublasLtHandle_t lt = nullptr;
  PARATWIN_CUBLAS_CHECK(cublasLtCreate(&lt));
  const std::unique_ptr<cublasLtContext, decltype(&cublasLtDestroy)> lt_owner(lt, &cublasLtDestroy);
  DeviceBuffer workspace(static_cast<i64>(cuda::kLtWorkspaceBytes));
  const cuda::GemmStreams side(cuda::kGemmSideStreams, cuda::kLtWorkspaceBytes), side8(8, cuda::kLtWorkspaceBytes);
  const i64 ffn = m.moe->expert_intermediate_size, H = m.hidden_size;
  for (const auto& [name, n, k] : {std::tuple<const char*, i64, i64>{"gate_up", 2 * ffn, H}, {"down", H, ffn}}) {
    cuda::Fp8GroupedGemm grouped(group_rows, n, k);
    const i64 rows = grouped.rows();
    cuda::Fp8Gemm dense(cuda::Fp8Scaling::kBlock, n, k);
    const i64 xs_count =
        std::max(grouped.activation_scale_count(), cuda::fp8_activation_scale_count(cuda::Fp8Scaling::kBlock, rows, k));
    const i64 ws_count = grouped.weight_scale_count();
    DeviceBuffer x((rows + 3) * k), w(local * n * k), y((rows + 3) * n * 2), xs(xs_count * 4), ws(local * ws_count * 4);
    cuda::launch_fill_random_fp8(x.get(), (rows + 3) * k, seed(), 1.0f, stream_);
    cuda::launch_fill_random_fp8(w.get(), local * n * k, seed(), 1.0f, stream_);
    // Positive scales in [0.5, 1.5), never zero.
    cuda::launch_fill_random(xs.get(), true, 1, xs_count, 0, nullptr, xs_count, seed(), 0.5f, 1.0f, stream_);
    cuda::launch_fill_random(ws.get(), true, 1, local * ws_count, 0, nullptr, local * ws_count, seed(), 0.5f, 1.0f,
                             stream_);
    const cuda::Fp8GemmLaunch dense_launch{lt, workspace.get(), cuda::kLtWorkspaceBytes, stream_};
    const cuda::Fp8GemmOperands dense_operands{x.get(), xs.as<float>(), w.get(), ws.as<float>(), y.get()};
    // As grouped_gemms: each method timed in turns with the dense GEMM, which is also timed alone.
    const auto dense_run = [&] { dense.run(dense_launch, dense_operands, rows); };
    const double dense_alone_s = time(dense_run);
    std::vector<double> dense_runs_s;
    const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(n) * static_cast<double>(k);
    const std::string shape = fmt::format("{} tok EP {}: {} experts, {} rows (~{}/expert), n {}, k {}", tokens, ep,
                                          local, rows, rows / local, n, k);
    const std::string published =
        published_grouped_anchor(static_cast<double>(rows) / static_cast<double>(local), n, k);
    const auto note = [&](double dense_s) {
      return fmt::format("dense fp8 block-scaled same size {:.0f} TFLOP/s in turns ({:.0f} alone){}{}",
                         flops / dense_s / 1e12, flops / dense_alone_s / 1e12, published.empty() ? "" : "; ", published);
    };
    const cuda::Fp8GroupedGemm::Operands operands{x.get(), xs.as<float>(), w.get(), ws.as<float>(), y.get()};
    // What `paratwin run --moe-gemm auto` runs at this shape on a Hopper GPU (cuda_plan::auto_fp8_moe_gemm_method):
    // issue 6's target applies to that row.
    cuda_plan::MoeGemmShape rule_shape;
    rule_shape.rows_per_expert = static_cast<double>(rows) / static_cast<double>(local);
    rule_shape.n = n;
    rule_shape.k = k;
    rule_shape.compute_capability = cuda_plan::kHopperKernelComputeCapability;
    const bool engine_kernel =
        cuda_plan::auto_fp8_moe_gemm_method(rule_shape) == cuda_plan::MoeGemmMethod::kHopperKernel;
    for (const cuda::GemmStreams* streams : {&side, &side8, static_cast<const cuda::GemmStreams*>(nullptr)}) {
      const cuda::Fp8GroupedGemm::Launch launch{lt, workspace.get(), cuda::kLtWorkspaceBytes, stream_, streams};
      const auto timed = time_against(dense_run, [&] { grouped.run(launch, operands); });
      dense_runs_s.push_back(timed.reference_s);
      std::optional<double> target;
      if (streams == &side && !engine_kernel) target = 0.8;
      rows_.push_back({fmt::format("fp8 grouped GEMM {} ({} stream{})", name, streams != nullptr ? streams->size() : 1,
                                   streams != nullptr ? "s" : ""),
                       m.name, shape, timed.launch_s, flops, true, timed.reference_s / timed.launch_s, target,
                       "dense fp8", note(timed.reference_s), std::nullopt, prompt_tokens_});
    }
    // The backend's persistent fp8 kernel (fp8_grouped_gemm_kernel.hpp) on the same operands, in the same run.
    const auto& kernel_table = grouped.kernel_table();
    DeviceBuffer device_kernel_table(static_cast<i64>(std::max<std::size_t>(kernel_table.size(), 1) * sizeof(int)));
    PARATWIN_CUDA_CHECK(cudaMemcpy(device_kernel_table.get(), kernel_table.data(), kernel_table.size() * sizeof(int),
                                   cudaMemcpyHostToDevice));
    cuda::Fp8GroupedGemm::Launch kernel_launch{lt, workspace.get(), cuda::kLtWorkspaceBytes, stream_, nullptr};
    kernel_launch.device_kernel_table = device_kernel_table.as<int>();
    bool kernel_ran = true;
    const auto kernel_timed =
        time_against(dense_run, [&] { kernel_ran = grouped.run_kernel(kernel_launch, operands) && kernel_ran; });
    dense_runs_s.push_back(kernel_timed.reference_s);
    std::optional<double> kernel_target;
    if (engine_kernel) kernel_target = 0.8;
    rows_.push_back({fmt::format("fp8 grouped GEMM {} (kernel)", name), m.name, shape, kernel_timed.launch_s, flops,
                     true, kernel_timed.reference_s / kernel_timed.launch_s, kernel_target, "dense fp8",
                     note(kernel_timed.reference_s) + (kernel_ran ? "" : " (did not run)"), std::nullopt,
                     prompt_tokens_});
    add_flops(fmt::format("dense fp8 GEMM {} same size", name), m, fmt::format("{} x {} x {}", rows, n, k),
              dense_alone_s, flops,
              fmt::format("block-scaled, alone; in turns with the methods {:.0f} TFLOP/s (median of {})",
                          flops / median_of(dense_runs_s) / 1e12, dense_runs_s.size()));
  }
}

}  // namespace paratwin::bench
