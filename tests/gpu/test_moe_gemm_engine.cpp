// The MoE expert GEMMs' launch choice (`paratwin run --moe-gemm`, CudaOptions::moe_gemm) through the engine on one
// GPU: a MoE model's whole step (per-token routing: gate, route, permute, the experts' gate_up and down GEMMs,
// combine) with each choice, checked against the single-GPU reference, which runs cuBLAS streams; the run's counts
// say which launch each expert GEMM took, and where the Hopper kernel cannot run an op the run says why.
#include <catch2/catch.hpp>
#include <iostream>
#include <string>
#include <utility>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/op_binder.hpp"
#include "models/schedule_builder.hpp"
#include "tests/backend/cuda_test_models.hpp"
#include "topology/cluster.hpp"
#include "topology/placement.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

CudaOptions options_for(const ModelSpec& model, MoeGemmChoice moe_gemm) {
  CudaOptions o;
  o.model = model;
  o.warmup_steps = 1;
  o.measured_steps = 3;
  o.timeout_s = 60;
  o.moe_gemm = moe_gemm;
  return o;
}

// The tiny Qwen3-MoE with another expert width: 96 makes gate_up's n 192 and down's k 96, off the kernel's tiles.
ModelSpec tiny_qwen_moe_of_width(int expert_width) {
  std::string config = kCudaTinyQwenMoe;
  const std::string width = "\"moe_intermediate_size\": 128";
  config.replace(config.find(width), width.size(), "\"moe_intermediate_size\": " + std::to_string(expert_width));
  return parse_model_config(config, "tiny-qwen3-moe-w" + std::to_string(expert_width));
}

struct MoeRun {
  CudaCheckResult check;
  CudaRunStats stats;
};

// One GPU, two MoE layers of 97 tokens (ragged experts): the check against the cuBLAS reference, then a timed run
// for the launch counts.
MoeRun run_moe(const ModelSpec& model, MoeGemmChoice moe_gemm) {
  const auto options = per_token_routing(97);
  const auto schedule = build_schedule(model, ParallelConfig{}, options);
  auto ref_options = options;
  ref_options.micro_batches = 0;
  const auto reference = build_schedule(model, ParallelConfig{}, ref_options);
  MoeRun r;
  r.check = check_cuda(schedule, reference, options_for(model, moe_gemm));
  const RankLayout layout(ParallelConfig{});
  const Placement placement(layout, load_cluster("h200-sxm", 1));
  r.stats = run_cuda(schedule, placement, options_for(model, moe_gemm)).stats;
  std::cout << "--moe-gemm " << moe_gemm_choice_name(moe_gemm) << " on " << model.name << ": hidden rel L2 "
            << r.check.hidden_rel_l2 << ", logits rel L2 " << r.check.logits_rel_l2 << "; " << moe_gemm_summary(r.stats)
            << "\n";
  INFO(moe_gemm_choice_name(moe_gemm) << ": " << r.check.detail << "; " << moe_gemm_summary(r.stats));
  CHECK(r.check.passed);
  CHECK(r.check.hidden_rel_l2 <= 1e-2);
  CHECK(r.check.logits_rel_l2 <= 1e-2);
  return r;
}

constexpr std::int64_t kExpertGemmsPerStep = 4;  // gate_up and down of each of the tiny model's 2 layers

}  // namespace

TEST_CASE("a MoE step with --moe-gemm hopper-kernel runs every expert GEMM on the kernel and equals cuBLAS", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  const auto r = run_moe(tiny_qwen_moe(), MoeGemmChoice::kHopperKernel);  // n 256 x k 256 and 256 x 128: supported
  CHECK(r.stats.moe_gemm_ops_hopper_kernel == kExpertGemmsPerStep);
  CHECK(r.stats.moe_gemm_ops_cublas_streams == 0);
  CHECK(r.stats.moe_gemm_fallbacks.empty());
  // --check's report says which launch it checked
  CHECK_THAT(r.check.detail, Catch::Contains("0 on cuBLAS streams, 4 on the Hopper kernel"));
}

TEST_CASE("a MoE step with --moe-gemm cublas-streams runs every expert GEMM on cuBLAS streams and equals one GPU",
          "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  const auto r = run_moe(tiny_qwen_moe(), MoeGemmChoice::kCublasStreams);
  CHECK(r.stats.moe_gemm_ops_cublas_streams == kExpertGemmsPerStep);
  CHECK(r.stats.moe_gemm_ops_hopper_kernel == 0);
  CHECK(r.stats.moe_gemm_fallbacks.empty());
}

// The tiny model's experts hold a few rows each, below the band of rows where --moe-gemm auto's rule picks the kernel
// (cuda_plan::AutoMoeGemmRule; its CPU tests cover the band).
TEST_CASE("the --moe-gemm auto runs cuBLAS streams for experts of fewer rows than its rule's band", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  const auto r = run_moe(tiny_qwen_moe(), MoeGemmChoice::kAuto);
  CHECK(r.stats.moe_gemm_ops_cublas_streams == kExpertGemmsPerStep);
  CHECK(r.stats.moe_gemm_fallbacks.empty());
}

TEST_CASE("the --moe-gemm hopper-kernel off the kernel's tiles falls back to cuBLAS streams, says why, and stays right",
          "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  const auto r = run_moe(tiny_qwen_moe_of_width(96), MoeGemmChoice::kHopperKernel);
  CHECK(r.stats.moe_gemm_ops_cublas_streams == kExpertGemmsPerStep);
  CHECK(r.stats.moe_gemm_ops_hopper_kernel == 0);
  REQUIRE(r.stats.moe_gemm_fallbacks.size() == 2);  // one line per reason: gate_up's n 192, down's k 96
  CHECK_THAT(r.stats.moe_gemm_fallbacks[0], Catch::Contains("2 op(s)") && Catch::Contains("off the kernel's tiles"));
  CHECK_THAT(r.stats.moe_gemm_fallbacks[1], Catch::Contains("2 op(s)") && Catch::Contains("off the kernel's tiles"));
  // a PASSED check of these ops checked the streams, and says so
  CHECK_THAT(r.check.detail, Catch::Contains("4 on cuBLAS streams, 0 on the Hopper kernel") &&
                                 Catch::Contains("off the kernel's tiles"));
}

TEST_CASE("the --moe-gemm hopper-kernel runs fp8 experts on the fp8 kernel and MLA's absorb GEMMs on cuBLAS", "[gpu]") {
  REQUIRE(cuda_device_count() >= 1);
  // The tiny DeepSeek: one MoE layer of fp8 experts (gate_up n 256 × k 256, down n 256 × k 128: on the fp8 kernel's
  // tiles; 64 rows per expert, below auto's band), bf16 grouped q_absorb / v_unabsorb (not experts: cuBLAS).
  const auto model = tiny_deepseek_fp8();
  const auto schedule = build_schedule(model, ParallelConfig{}, prefill(256));
  const RankLayout layout(ParallelConfig{});
  const Placement placement(layout, load_cluster("h200-sxm", 1));
  const auto kernel = run_cuda(schedule, placement, options_for(model, MoeGemmChoice::kHopperKernel));
  CHECK(kernel.trace.events.size() == schedule.ranks[0].size());
  CHECK(kernel.stats.moe_gemm_ops_hopper_kernel == 0);
  CHECK(kernel.stats.moe_gemm_ops_cublas_streams == 0);
  CHECK(kernel.stats.moe_gemm_ops_fp8 == 0);
  CHECK(kernel.stats.moe_gemm_ops_fp8_kernel == 2);  // the MoE layer's gate_up and down
  CHECK_THAT(moe_gemm_summary(kernel.stats), Catch::Contains("2 fp8 on the fp8 Hopper kernel"));
  CHECK(kernel.stats.moe_gemm_fallbacks.empty());
  const auto automatic = run_cuda(schedule, placement, options_for(model, MoeGemmChoice::kAuto));
  CHECK(automatic.stats.moe_gemm_ops_fp8 == 2);
  CHECK(automatic.stats.moe_gemm_ops_fp8_kernel == 0);
  CHECK_THAT(moe_gemm_summary(automatic.stats), Catch::Contains("2 fp8 on block-scaled cuBLASLt streams"));
}

// Binding touches no GPU: the bound program says whether the engine gives the side streams their cuBLASLt workspaces
// (4 x 32 MiB, outside the pool): only for fp8 GEMMs of several experts, not for fp8 dense GEMMs or bf16 experts.
TEST_CASE("the side streams get cuBLASLt workspaces only where fp8 GEMMs of several experts run on them", "[gpu]") {
  const auto bound = [](const ModelSpec& model, int layers) {
    auto options = prefill(256);
    options.layers = layers;
    const auto schedule = build_schedule(model, ParallelConfig{}, options);
    cuda::RankProgram program;
    cuda::bind_rank(schedule, model, 0, 1, cuda::BindOptions{}, program);
    return std::make_pair(program.fp8_side_streams, program.fp8_moe_gemms);
  };
  const auto deepseek = tiny_deepseek_fp8();
  CHECK(bound(deepseek, 0) == std::make_pair(true, std::int64_t{2}));   // its MoE layer's fp8 gate_up and down
  CHECK(bound(deepseek, 1) == std::make_pair(false, std::int64_t{0}));  // the dense first layer: fp8 dense GEMMs only
  CHECK(bound(tiny_qwen_moe(), 0) == std::make_pair(false, std::int64_t{0}));  // bf16 experts
}
