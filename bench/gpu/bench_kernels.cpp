// Every compute kernel of the CUDA backend at the zoo models' prefill shapes (DeepSeek-V3.2, Llama-3.1-70B,
// Qwen3-235B-A22B; 8K and 16K tokens, the MoE GEMMs at 8K and 32K tokens and EP 1 and 8), in one run, against the
// ceilings measured in the same run (device-to-device copy bandwidth, a bf16 cuBLAS GEMM of 8192³) and the published
// anchors / issue 6's targets. Time = median of 10 CUDA-event runs after warm-up, each launch queued behind a spin
// kernel as in a server's stream (kernel_timing.hpp), on fresh seeded random data; a kernel below its target is
// printed as such. The layer's memory-bound kernels also show their rate over that of a copy of the same bytes timed
// the same way ("of copy@size": what a launch of that size can reach; bench_memory_launch breaks the difference
// down). Cases: kernel_cases.hpp.
// Usage: bench_kernels [--csv FILE] [--memory-only | --dsa-only | --grouped-only | --fp8-experts-only]
//   --memory-only  only the memory-bound layer kernels (rmsnorm, add, add_rmsnorm, rope, silu_mul; a few seconds,
//                  for comparing variants of them; the full table runs them between GEMMs, which leave the GPU's
//                  clock lower)
//   --dsa-only     only DeepSeek-V3.2's DSA rows (the indexer on each of its bf16 tensor-core kernels and on the
//                  fp8 Hopper kernel, top-k, sparse attention, MLA's per-head absorb GEMMs at 4K and 16K tokens),
//                  against the same ceilings, measured first as always, and the fp8 indexer against a dense fp8 GEMM
//                  of 8192^3 measured in the same run (its own row)
//   --grouped-only the MoE expert GEMMs of grouped_gemm.hpp only, each method against its dense GEMM of the same
//                  size, against the same ceilings
//   --fp8-experts-only  DeepSeek-V3.2's fp8 expert GEMMs only (fp8_grouped_gemm.hpp on the backend's 4 side
//                  streams, on 8 and on one, and its persistent fp8 kernel; 8K and 32K tokens at EP 1 and 8),
//                  against the dense block-scaled fp8 GEMM of the same size
//   --model NAME   only this one of the three models (any mode)
//   --tokens N, --ep N  with --grouped-only or --fp8-experts-only: only the shapes of N tokens (8192 or 32768) / of
//                  EP N (1 or 8), e.g. one shape for a profiler: --grouped-only --model deepseek-v3.2 --tokens 8192
//                  --ep 1 launches the persistent kernel 12 times per GEMM, gate_up first (warm-up 2, timed 10)
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "bench/gpu/bench_output.hpp"
#include "bench/gpu/kernel_cases.hpp"
#include "models/model_spec.hpp"
#include "topology/error.hpp"

namespace {

using paratwin::bench::KernelBench;
using paratwin::bench::KernelRow;
using i64 = std::int64_t;

std::string status(const KernelRow& r) {
  if (!r.target) return "";
  return r.fraction >= *r.target ? "meets target" : fmt::format("BELOW target ({:.2f})", *r.target);
}

std::string rate(const KernelRow& r) {
  return r.flops ? fmt::format("{:.1f} TFLOP/s", r.work / r.seconds / 1e12)
                 : fmt::format("{:.0f} GB/s", r.work / r.seconds / 1e9);
}

void print_table(const KernelBench& b) {
  fmt::print("\nceilings: device-to-device copy {:.0f} GB/s (read + write), bf16 cuBLAS GEMM 8192^3 {:.1f} TFLOP/s\n\n",
             b.ceilings().copy_bytes_per_s / 1e9, b.ceilings().gemm_flops_per_s / 1e12);
  fmt::print("{:<30} {:<16} {:<62} {:>10} {:>16} {:>12} {:>12}  {}\n", "kernel", "model", "shape", "time ms", "rate",
             "fraction", "of copy@size", "anchor / target");
  for (const auto& r : b.rows()) {
    const std::string at_size = r.fraction_of_copy_at_size ? fmt::format("{:.2f}", *r.fraction_of_copy_at_size) : "";
    fmt::print("{:<30} {:<16} {:<62} {:>10.3f} {:>16} {:>6.2f} {:<5} {:>12}  {} {}\n", r.kernel, r.model, r.shape,
               r.seconds * 1e3, rate(r), r.fraction, r.versus, at_size, r.anchor, status(r));
  }
}

std::string csv_field(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void write_csv(const KernelBench& b, const std::string& path) {
  paratwin::bench::write_csv_atomically(path, [&b](std::ofstream& f) {
    f << "kernel,model,shape,time_s,work,unit,rate_per_s,fraction,versus,target,anchor,status,fraction_of_copy_at_"
         "size,prompt_tokens\n";
    for (const auto& r : b.rows()) {
      f << fmt::format(
          "{},{},{},{:.9g},{:.6g},{},{:.6g},{:.4f},{},{},{},{},{},{}\n", csv_field(r.kernel), csv_field(r.model),
          csv_field(r.shape), r.seconds, r.work, r.flops ? "flop" : "byte", r.work / r.seconds, r.fraction, r.versus,
          r.target ? fmt::format("{:.3f}", *r.target) : "", csv_field(r.anchor), csv_field(status(r)),
          r.fraction_of_copy_at_size ? fmt::format("{:.4f}", *r.fraction_of_copy_at_size) : "", r.prompt_tokens);
    }
    f << fmt::format("\"ceiling copy\",,,,,byte,{:.6g},,,,,,,\n", b.ceilings().copy_bytes_per_s);
    f << fmt::format("\"ceiling GEMM 8192^3\",,,,,flop,{:.6g},,,,,,,\n", b.ceilings().gemm_flops_per_s);
  });
}

// The value of `flag` if it is one of `allowed`; nullopt (after saying why) otherwise.
std::optional<i64> parse_choice(const std::string& flag, const std::string& value, std::initializer_list<i64> allowed) {
  i64 v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec == std::errc{} && end == value.data() + value.size() &&
      std::find(allowed.begin(), allowed.end(), v) != allowed.end()) {
    return v;
  }
  fmt::print(stderr, "bench_kernels: {} '{}' is not one of the benchmarked values ({})\n", flag, value,
             fmt::join(allowed, ", "));
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv;
  bool memory_only = false, dsa_only = false, grouped_only = false, fp8_experts_only = false;
  const std::array<const char*, 3> models = {"deepseek-v3.2", "llama-3.1-70b", "qwen3-235b-a22b"};
  std::string only_model;
  std::optional<i64> only_tokens, only_ep;
  const char* usage =
      "usage: bench_kernels [--csv FILE] [--memory-only | --dsa-only | --grouped-only | --fp8-experts-only] "
      "[--model NAME] [--tokens N] [--ep N]";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--csv" && i + 1 < argc) {
      csv = argv[++i];
    } else if (a == "--model" && i + 1 < argc) {
      only_model = argv[++i];
      if (std::find(models.begin(), models.end(), only_model) == models.end()) {
        fmt::print(stderr, "bench_kernels: --model '{}' is not one of the benchmarked models ({})\n", only_model,
                   fmt::join(models, ", "));
        return 2;
      }
    } else if (a == "--tokens" && i + 1 < argc) {
      only_tokens = parse_choice(a, argv[++i], {8192, 32768});
      if (!only_tokens) return 2;
    } else if (a == "--ep" && i + 1 < argc) {
      only_ep = parse_choice(a, argv[++i], {1, 8});
      if (!only_ep) return 2;
    } else if (a == "--memory-only") {
      memory_only = true;
    } else if (a == "--dsa-only") {
      dsa_only = true;
    } else if (a == "--grouped-only") {
      grouped_only = true;
    } else if (a == "--fp8-experts-only") {
      fp8_experts_only = true;
    } else if (a == "--help" || a == "-h") {
      fmt::print("{}\n", usage);
      return 0;
    } else {
      fmt::print(stderr, "bench_kernels: unknown or incomplete argument '{}' ({})\n", a, usage);
      return 2;
    }
  }
  if (int{memory_only} + int{dsa_only} + int{grouped_only} + int{fp8_experts_only} > 1) {
    fmt::print(stderr,
               "bench_kernels: --memory-only, --dsa-only, --grouped-only and --fp8-experts-only exclude each other "
               "({})\n",
               usage);
    return 2;
  }
  if ((only_tokens || only_ep) && !grouped_only && !fp8_experts_only) {
    fmt::print(stderr,
               "bench_kernels: --tokens and --ep select MoE expert GEMM shapes: they need --grouped-only or "
               "--fp8-experts-only ({})\n",
               usage);
    return 2;
  }
  const auto selected = [&](i64 tokens, int ep) {
    return (!only_tokens || *only_tokens == tokens) && (!only_ep || *only_ep == ep);
  };
  try {
    if (!csv.empty()) paratwin::bench::require_creatable_csv(csv);  // fails now, not after the whole run
    if (!paratwin::bench::cuda_gpu_visible("bench_kernels")) return 1;
    PARATWIN_CUDA_CHECK(cudaSetDevice(0));
    KernelBench b;
    for (const char* name : models) {
      if (!only_model.empty() && only_model != name) continue;
      const auto m = paratwin::load_model(name);
      if (memory_only) {
        for (const i64 tokens : {i64{8192}, i64{16384}}) {
          b.set_prompt_tokens(tokens);
          b.memory_kernels(m, tokens);
        }
        continue;
      }
      b.set_prompt_tokens(16384);
      const auto absorb = [&] {  // the 4K-token CP shard of an 8K prompt, and 16K
        for (const i64 tokens : {i64{4096}, i64{16384}}) {
          b.set_prompt_tokens(tokens);
          b.mla_absorb_gemms(m, tokens);  // no rows for models without DSA
        }
      };
      if (dsa_only) {
        b.dsa(m, 16384);  // no rows for models without DSA
        absorb();
        continue;
      }
      const auto grouped = [&] {
        for (const i64 tokens : {i64{8192}, i64{32768}}) {
          b.set_prompt_tokens(tokens);
          for (const int ep : {1, 8}) {
            if (selected(tokens, ep)) b.grouped_gemms(m, tokens, ep);
          }
        }
      };
      const auto fp8_experts = [&] {
        for (const auto& [tokens, ep] : {std::pair<i64, int>{8192, 1}, {8192, 8}, {32768, 1}, {32768, 8}}) {
          if (!selected(tokens, ep)) continue;
          b.set_prompt_tokens(tokens);
          b.fp8_grouped_gemms(m, tokens, ep);  // no rows for bf16 models
        }
      };
      if (grouped_only) {
        grouped();
        continue;
      }
      if (fp8_experts_only) {
        fp8_experts();
        continue;
      }
      for (const i64 tokens : {i64{8192}, i64{16384}}) {
        b.set_prompt_tokens(tokens);
        b.memory_kernels(m, tokens);
        b.moe_kernels(m, tokens);
        b.attention(m, tokens);
      }
      b.dsa(m, 16384);
      absorb();
      b.set_prompt_tokens(16384);
      b.dense_gemms(m, 16384);
      b.fp8_gemms(m, 16384);
      grouped();
      fp8_experts();
    }
    print_table(b);
    if (!csv.empty()) write_csv(b, csv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_kernels: {}\n", e.what());
    return 1;
  }
  return 0;
}
