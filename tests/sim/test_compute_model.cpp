#include <catch2/catch.hpp>

#include "models/op_costs.hpp"
#include "sim/calibration.hpp"
#include "sim/compute_model.hpp"
#include "tests/sim/sim_test_util.hpp"

using namespace paratwin;

TEST_CASE("efficiency curves interpolate in log2(size) and clamp", "[sim][compute]") {
  const EfficiencyCurve c{{{64, 0.2}, {256, 0.6}}};
  CHECK(c.at(1) == Approx(0.2));
  CHECK(c.at(64) == Approx(0.2));
  CHECK(c.at(128) == Approx(0.4));  // halfway in log2
  CHECK(c.at(256) == Approx(0.6));
  CHECK(c.at(1e9) == Approx(0.6));
}

TEST_CASE("compute model: roofline, fp8 peak, causal attention curve, launch overhead", "[sim][compute]") {
  const Cluster cluster = test::h200_cluster(1);
  Calibration cal = default_calibration();
  const sim::ComputeModel model(cluster.gpu, cal.compute);
  const ComputeOp big = test::gemm(8192, 8192, 8192);
  const double eff = 797.8 / 989.4;
  CHECK(model.op_time_s(big) == Approx(big.flops / (989.4e12 * eff) + 0.9e-6));
  ComputeOp attn;
  attn.kind = ComputeKind::kAttention;
  attn.shape.kv_tokens = 16384;
  attn.flops = 1e12;
  attn.bytes = 1e6;
  const double non_causal = model.op_time_s(attn);
  attn.shape.causal = true;
  const double causal = model.op_time_s(attn);
  CHECK(non_causal == Approx(1e12 / 648e12 + 0.9e-6));  // FA3 16K non-causal 648 TFLOPs
  CHECK(causal == Approx(1e12 / 616e12 + 0.9e-6));      // FA3 16K causal 616 TFLOPs
  // A memory-bound elementwise op.
  const ComputeOp norm = test::cost(1e6, 1e9, ComputeKind::kRmsNorm);
  CHECK(model.op_time_s(norm) == Approx(1e9 / (4.8e12 * 2903.0 / 3350.0) + 0.9e-6));
  // The fused add + norm: one launch over its bytes, cheaper than the add and the norm it replaces by one launch
  // overhead and the norm's re-read of the sum (Qwen3-235B's 8K rows: 8192 × 4096 bf16).
  ComputeOp fused;
  fused.kind = ComputeKind::kAddRmsNorm;
  fused.shape.m = 8192;
  fused.shape.n = 4096;
  fill_cost(fused);
  auto add = fused, plain = fused;
  add.kind = ComputeKind::kResidualAdd;
  plain.kind = ComputeKind::kRmsNorm;
  fill_cost(add);
  fill_cost(plain);
  const double hbm = 4.8e12 * 2903.0 / 3350.0;
  CHECK(model.op_time_s(fused) == Approx((4.0 * 8192 * 4096 + 4096) * 2 / hbm + 0.9e-6));
  CHECK(model.op_time_s(add) + model.op_time_s(plain) - model.op_time_s(fused) ==
        Approx(8192.0 * 4096 * 2 / hbm + 0.9e-6));
  // A kind's latency adds to its ops alone, beside the launch overhead.
  Calibration slow_norms = default_calibration();
  slow_norms.compute.of(ComputeKind::kRmsNorm).latency_s = 4e-6;
  const sim::ComputeModel with_latency(cluster.gpu, slow_norms.compute);
  CHECK(with_latency.op_time_s(norm) == Approx(model.op_time_s(norm) + 4e-6));
  CHECK(with_latency.op_time_s(big) == Approx(model.op_time_s(big)));
  // Grouped GEMM reads its curve at mean rows per expert.
  ComputeOp grouped;
  grouped.kind = ComputeKind::kGroupedGemm;
  grouped.shape.group_rows = {100, 300};
  CHECK(sim::ComputeModel::curve_size(grouped) == Approx(200));
}

TEST_CASE("compute model: an op's regime is its slower term at full efficiency, and only that regime's efficiency applies",
          "[sim][compute]") {
  const Cluster cluster = test::h200_cluster(1);
  Calibration cal = default_calibration();
  // A memory efficiency fitted on small, latency-bound GEMMs, and compute efficiency at 0.6.
  cal.compute.of(ComputeKind::kGemm).memory_efficiency = EfficiencyCurve{{{1, 0.05}}};
  cal.compute.of(ComputeKind::kGemm).compute_efficiency = EfficiencyCurve{{{1, 0.6}}};
  const sim::ComputeModel model(cluster.gpu, cal.compute);
  // Compute-bound at full efficiency (1e12 flops: 1.01 ms at the bf16 peak; 1e9 bytes: 0.21 ms at 4.8 TB/s), though
  // its bytes at 5 % of HBM (4.2 ms) would be the slower term: the compute term alone prices it.
  const ComputeOp compute_bound = test::cost(1e12, 1e9, ComputeKind::kGemm);
  CHECK(model.op_time_s(compute_bound) == Approx(1e12 / (989.4e12 * 0.6) + 0.9e-6));
  // Memory-bound at full efficiency: its bytes at the memory efficiency.
  const ComputeOp memory_bound = test::cost(1e9, 1e9, ComputeKind::kGemm);
  CHECK(model.op_time_s(memory_bound) == Approx(1e9 / (4.8e12 * 0.05) + 0.9e-6));
}

TEST_CASE("compute model: fp8 ops read the kind's fp8 curves where the calibration has them, else its own",
          "[sim][compute]") {
  const Cluster cluster = test::h200_cluster(1);
  Calibration cal = default_calibration();
  KernelParams& gemm = cal.compute.of(ComputeKind::kGemm);
  gemm.compute_efficiency = EfficiencyCurve{{{1, 0.74}}};
  gemm.memory_efficiency = EfficiencyCurve{{{1, 0.8}}};
  // Compute-bound at full efficiency at either peak: 1e13 flops take 5.05 ms at the fp8 peak, 1e9 bytes 0.21 ms.
  ComputeOp fp8_op = test::cost(1e13, 1e9, ComputeKind::kGemm);
  fp8_op.dtype = DType::kFp8;
  const ComputeOp bf16_op = test::cost(1e13, 1e9, ComputeKind::kGemm);
  const double launch_s = 0.9e-6;
  {
    const sim::ComputeModel model(cluster.gpu, cal.compute);  // no fp8 curve: the kind's own at the fp8 peak
    CHECK(model.op_time_s(fp8_op) == Approx(1e13 / (1978.9e12 * 0.74) + launch_s));
  }
  gemm.fp8_compute_efficiency = EfficiencyCurve{{{1, 0.57}}};
  const sim::ComputeModel model(cluster.gpu, cal.compute);
  CHECK(model.op_time_s(fp8_op) == Approx(1e13 / (1978.9e12 * 0.57) + launch_s));
  CHECK(model.op_time_s(bf16_op) == Approx(1e13 / (989.4e12 * 0.74) + launch_s));
  // Memory-bound fp8 ops keep the kind's memory curve: bytes are bytes.
  ComputeOp fp8_streaming = test::cost(1e9, 1e9, ComputeKind::kGemm);
  fp8_streaming.dtype = DType::kFp8;
  CHECK(model.op_time_s(fp8_streaming) == Approx(1e9 / (4.8e12 * 0.8) + launch_s));

  // The causal variants: each causal op reads its dtype's causal curve, then its dtype's plain one, then (fp8) the
  // kind's own curves.
  KernelParams params;
  params.compute_efficiency = EfficiencyCurve{{{1, 0.6}}};
  params.causal_compute_efficiency = EfficiencyCurve{{{1, 0.5}}};
  CHECK(params.compute_curve(DType::kFp8, true).at(1) == 0.5);
  CHECK(params.compute_curve(DType::kFp8, false).at(1) == 0.6);
  params.fp8_causal_compute_efficiency = EfficiencyCurve{{{1, 0.3}}};
  CHECK(params.compute_curve(DType::kFp8, true).at(1) == 0.3);
  CHECK(params.compute_curve(DType::kFp8, false).at(1) == 0.6);  // no non-causal fp8 curve
  CHECK(params.compute_curve(DType::kBf16, true).at(1) == 0.5);
  params.fp8_compute_efficiency = EfficiencyCurve{{{1, 0.4}}};
  CHECK(params.compute_curve(DType::kFp8, false).at(1) == 0.4);
  params.fp8_causal_compute_efficiency.points.clear();
  CHECK(params.compute_curve(DType::kFp8, true).at(1) == 0.4);
  CHECK(params.compute_curve(DType::kBf16, false).at(1) == 0.6);
  CHECK(params.compute_curve(DType::kFp32, true).at(1) == 0.5);

  // Through the model: a causal fp8 indexer op on its fp8 causal curve.
  KernelParams& indexer = cal.compute.of(ComputeKind::kIndexerScore);
  indexer.fp8_causal_compute_efficiency = EfficiencyCurve{{{1, 0.35}}};
  const sim::ComputeModel with_indexer(cluster.gpu, cal.compute);
  ComputeOp score = test::cost(1e13, 1e9, ComputeKind::kIndexerScore);
  score.dtype = DType::kFp8;
  score.shape.causal = true;
  CHECK(with_indexer.op_time_s(score) == Approx(1e13 / (1978.9e12 * 0.35) + launch_s));
  score.shape.causal = false;  // the built-in indexer curve: the GEMM curve's, at 1 query its first point
  CHECK(with_indexer.op_time_s(score) == Approx(1e13 / (1978.9e12 * 336.0 / 1979.0) + launch_s));
}
