// The numerical check (`paratwin run --check`): the parallel run's final hidden states and logits against a
// single-GPU run of the same code, token by token; under mpirun process 0 runs the reference and shares the verdict.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/engine.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

using cuda::RankDevices;
using cuda_plan::RankOutputs;

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The parallel run's outputs against the reference's, token by token.
CudaCheckResult compare_outputs(const std::vector<RankOutputs>& parallel, const RankOutputs& r0) {
  CudaCheckResult result;
  const auto h = static_cast<std::size_t>(r0.hidden_size);
  std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> ref_row;
  for (std::size_t i = 0; i < r0.request.size(); ++i) ref_row[{r0.request[i], r0.position[i]}] = i;
  std::vector<float> got, want;
  std::map<std::pair<std::int64_t, std::int64_t>, bool> seen;
  for (const auto& out : parallel) {
    for (std::size_t i = 0; i < out.request.size(); ++i) {
      const auto key = std::make_pair(out.request[i], out.position[i]);
      const auto it = ref_row.find(key);
      if (it == ref_row.end())
        fail("check: token (request {}, position {}) is not in the reference", key.first, key.second);
      seen[key] = true;
      got.insert(got.end(), out.hidden.begin() + static_cast<std::ptrdiff_t>(i * h),
                 out.hidden.begin() + static_cast<std::ptrdiff_t>((i + 1) * h));
      want.insert(want.end(), r0.hidden.begin() + static_cast<std::ptrdiff_t>(it->second * h),
                  r0.hidden.begin() + static_cast<std::ptrdiff_t>((it->second + 1) * h));
    }
  }
  if (seen.size() != ref_row.size()) {
    fail("check: the parallel run produced {} of the reference's {} tokens", seen.size(), ref_row.size());
  }
  result.hidden_rel_l2 = rel_l2(got, want);
  const RankOutputs* logits = nullptr;
  for (const auto& out : parallel) {
    if (!out.logits.empty()) {
      logits = &out;
      break;
    }
  }
  if (logits == nullptr || r0.logits.empty()) fail("check: no logits were produced");
  result.logits_rel_l2 = rel_l2(logits->logits, r0.logits);
  result.passed = result.hidden_rel_l2 <= result.tolerance && result.logits_rel_l2 <= result.tolerance &&
                  std::isfinite(result.hidden_rel_l2) && std::isfinite(result.logits_rel_l2);
  result.detail = fmt::format("{} tokens × {} hidden, {} logits; reference: one GPU, same code, no parallelism",
                              ref_row.size(), h, r0.logits.size());
  return result;
}

// Process 0's result, to every process (the others ran no reference).
CudaCheckResult share_check_result(const ProcessGroup& processes, const CudaCheckResult& mine) {
  const std::string text = processes.process_index() == 0
                               ? fmt::format("{:.17g} {:.17g} {:.17g} {}\n{}", mine.hidden_rel_l2, mine.logits_rel_l2,
                                             mine.tolerance, mine.passed ? 1 : 0, mine.detail)
                               : std::string();
  const auto all = processes.exchange(text);
  std::istringstream in(all.front());
  CudaCheckResult r;
  int passed = 0;
  in >> r.hidden_rel_l2 >> r.logits_rel_l2 >> r.tolerance >> passed;
  in.ignore(1);
  std::getline(in, r.detail);
  PARATWIN_ASSERT(!in.fail(), "check result from process 0: '{}'", all.front());
  r.passed = passed == 1;
  return r;
}

}  // namespace

CudaCheckResult check_cuda(const Schedule& schedule, const Schedule& reference, const CudaOptions& options) {
  if (reference.ranks.size() != 1)
    fail("the check's reference must be a single-rank schedule, got {} ranks", reference.ranks.size());
  const auto model = cuda::model_for(schedule, options);
  CudaOptions o = options;
  o.warmup_steps = 0;
  o.measured_steps = 1;
  const int world = static_cast<int>(schedule.ranks.size());
  const bool several = o.processes != nullptr && o.processes->process_count() > 1;
  // One process: rank r on GPU r. Several (one per node or per GPU): the node's GPUs in rank order.
  const int devices = several ? std::max(1, cuda_device_count()) : 1;
  RankDevices d;
  for (int r = 0; r < world; ++r) {
    d.gpu.push_back(!o.gpus.empty() ? o.gpus.at(static_cast<std::size_t>(r)) : several ? r % devices : r);
    d.node.push_back(0);
  }
  const auto par = cuda::run_engine(schedule, model, d, o, true);
  if (!par.run.stats.generic_ops.empty()) {
    fail(
        "--check needs the real data flow of every op, but {} op(s) of rank 0 run on scratch buffers (first: '{}'): "
        "the check covers GQA/MHA models with all-gather CP, attention TP and PP, and MoE layers under --routing "
        "per-token (bf16, softmax router, no shared experts)",
        par.run.stats.generic_ops.size(), par.run.stats.generic_ops.front());
  }
  CudaCheckResult result;
  if (!several || o.processes->process_index() == 0) {
    CudaOptions ref_options = o;
    ref_options.group_fault.reset();  // a fault injected into the layout under test, never into the reference
    ref_options.group_override.reset();
    ref_options.processes = nullptr;  // the reference runs in process 0 alone
    ref_options.moe_gemm =
        MoeGemmChoice::kCublasStreams;  // the Hopper kernel, where asked for, is checked against cuBLAS
    const auto ref = cuda::run_engine(reference, model, RankDevices{{d.gpu.front()}, {0}}, ref_options, true);
    result = compare_outputs(par.outputs, ref.outputs.front());
    // Which launch the experts' GEMMs took under test: a PASSED check of --moe-gemm hopper-kernel says nothing of the
    // kernel where every op fell back to the streams.
    const auto& stats = par.run.stats;
    if (stats.moe_gemm_ops_cublas_streams + stats.moe_gemm_ops_hopper_kernel + stats.moe_gemm_ops_fp8 > 0) {
      result.detail += fmt::format("; MoE expert GEMMs of rank 0 per step: {}", moe_gemm_summary(stats));
      for (const auto& why : stats.moe_gemm_fallbacks) result.detail += "; " + why;
    }
  }
  return several ? share_check_result(*o.processes, result) : result;
}

}  // namespace paratwin
