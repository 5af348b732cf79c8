#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace paratwin::bench {

/// A published fp8 grouped-GEMM rate: every group exactly `rows_per_group` rows of X against its own n × k weight,
/// block-scaled as DeepSeek-V3's experts are.
struct PublishedGroupedRate {
  std::int64_t rows_per_group, n, k;
  double tflops;
};

/// DeepGEMM's README (H800, "Grouped GEMMs for MoE models (masked layout)"), at DeepSeek-V3's expert shapes: the
/// state of the art that the backend's fp8 expert GEMMs compare with. The same table's dense fp8 GEMM of 4096 rows
/// reached 1304 (n 4096, k 7168) and 1025 TFLOP/s (n 7168, k 2048). H800 has H100 SXM's SMs and clocks, as H200 has.
inline constexpr PublishedGroupedRate kDeepGemmMaskedRates[] = {
    {256, 4096, 7168, 932},  {256, 7168, 2048, 815},  {512, 4096, 7168, 1040},
    {512, 7168, 2048, 916},  {1024, 4096, 7168, 1233}, {1024, 7168, 2048, 925},
};

/// The published rate for experts of ~`rows_per_expert` rows at n × k, as an anchor for a bench row: the entry of the
/// same n × k whose rows per group lie within a factor of 1.25 of `rows_per_expert` (routed rows vary around their
/// mean), or "" where none does.
inline std::string published_grouped_anchor(double rows_per_expert, std::int64_t n, std::int64_t k) {
  for (const auto& r : kDeepGemmMaskedRates) {
    const double ratio = rows_per_expert / static_cast<double>(r.rows_per_group);
    if (r.n == n && r.k == k && ratio >= 1 / 1.25 && ratio <= 1.25) {
      return fmt::format("DeepGEMM {:.0f} TFLOP/s (H800, {} rows/group, published)", r.tflops, r.rows_per_group);
    }
  }
  return "";
}

}  // namespace paratwin::bench
