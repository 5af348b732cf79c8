#include "cli/workload_flags.hpp"

#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "models/schedule_strings.hpp"
#include "topology/error.hpp"

namespace paratwin::cli {

void add_workload_flags(CLI::App& app, WorkloadFlags& f, bool layout_choices) {
  const auto zoo = fmt::format("{}", fmt::join(model_zoo_names(), ", "));
  app.add_option("--model", f.model, "Model: a zoo name (" + zoo + ") or a Hugging Face config.json path")
      ->capture_default_str()
      ->group("Workload");
  app.add_option("--weight-dtype", f.weight_dtype,
                 "Weight type of the linear layers: bf16 or fp8 (default: the file's)")
      ->group("Workload");
  app.add_option("--prompt-len", f.prompt_len, "Prefill: tokens per request; decode: context length per request")
      ->required()
      ->group("Workload");
  app.add_option("--batch", f.batch, "Requests in the step (split over attention-DP replicas)")
      ->capture_default_str()
      ->group("Workload");
  app.add_option("--phase", f.phase, "prefill or decode")->capture_default_str()->group("Workload");
  if (layout_choices) {
    app.add_option("--cp-algo", f.cp_algo,
                   "Attention CP algorithm: allgather (SGLang's), ring (pass-KV) or ulysses (all-to-all heads)")
        ->capture_default_str()
        ->group("Workload");
    app.add_option("--cp-split", f.cp_split,
                   "Token split over CP ranks: round-robin (SGLang's round-robin-split) or zigzag (in-seq-split)")
        ->capture_default_str()
        ->group("Workload");
    app.add_option("--moe-mode", f.moe_mode,
                   "MoE under CP/EP: a2a (DeepEP dispatch/combine over MOE_EP) or gather (all-gather over ATTN_CP, "
                   "TP-sharded experts, reduce-scatter); default a2a when --ep-size > 1")
        ->group("Workload");
  }
  app.add_option("--layers", f.layers, "Use only the first K layers (0: all)")->group("Workload");
  app.add_option("--micro-batches", f.micro_batches, "Prefill chunks pipelined over PP stages (default: --pp-size)")
      ->group("Workload");
  app.add_option("--routing", f.routing,
                 "Expert load: uniform, zipf, or per-token (each token's experts a seeded hash of its position: what "
                 "--check routes real tensors by)")
      ->capture_default_str()
      ->group("Workload");
  app.add_option("--zipf-exponent", f.zipf_exponent, "Skew of --routing zipf")
      ->capture_default_str()
      ->group("Workload");
  app.add_option("--seed", f.seed, "Seed of the routing draw")->capture_default_str()->group("Workload");
  app.add_option("--kv-cache-dtype", f.kv_cache_dtype, "KV cache type for the memory estimate: bf16 or fp8")
      ->capture_default_str()
      ->group("Memory");
  app.add_option("--mem-fraction-static", f.mem_fraction_static,
                 "SGLang's share of GPU memory for weights and KV cache; the rest must hold activations")
      ->capture_default_str()
      ->group("Memory");
}

ModelSpec load_workload_model(const WorkloadFlags& f) {
  std::optional<DType> dtype;
  if (!f.weight_dtype.empty()) {
    dtype = parse_dtype(f.weight_dtype);
    if (*dtype != DType::kBf16 && *dtype != DType::kFp8) {
      fail("--weight-dtype {} is not supported: use bf16 or fp8", f.weight_dtype);
    }
  }
  return load_model(f.model, dtype);
}

ScheduleOptions schedule_options(const WorkloadFlags& f) {
  ScheduleOptions o;
  o.phase = parse_phase(f.phase);
  o.prompt_tokens = f.prompt_len;
  o.batch = f.batch;
  o.cp_algorithm = parse_cp_algorithm(f.cp_algo);
  o.cp_split = parse_cp_split(f.cp_split);
  if (!f.moe_mode.empty()) o.moe_mode = parse_moe_mode(f.moe_mode);
  o.layers = f.layers;
  o.micro_batches = f.micro_batches;
  if (f.routing == "uniform") {
    o.routing.load = RoutingLoad::kUniform;
  } else if (f.routing == "zipf") {
    o.routing.load = RoutingLoad::kZipf;
  } else if (f.routing == "per-token") {
    o.routing.load = RoutingLoad::kPerToken;
  } else {
    fail("--routing '{}' is unknown: use uniform, zipf or per-token", f.routing);
  }
  if (!(f.zipf_exponent >= 0 && f.zipf_exponent <= 10)) {
    fail("--zipf-exponent {} is invalid: between 0 and 10", f.zipf_exponent);
  }
  o.routing.zipf_exponent = f.zipf_exponent;
  o.routing.seed = f.seed;
  return o;
}

MemoryRequest memory_request(const WorkloadFlags& f, const ParallelConfig& config, MoeMode moe_mode,
                             double gpu_memory_bytes) {
  return memory_request_for(schedule_options(f), config, moe_mode, gpu_memory_bytes, f.mem_fraction_static,
                            parse_dtype(f.kv_cache_dtype));
}

}  // namespace paratwin::cli
