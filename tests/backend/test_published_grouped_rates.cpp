#include <catch2/catch.hpp>

#include "bench/gpu/published_grouped_rates.hpp"

namespace paratwin::bench {

TEST_CASE("the fp8 grouped bench rows name DeepGEMM's published rate at DeepSeek-V3's expert shapes",
          "[bench][published]") {
  // DeepSeek-V3.2 at 8K tokens routes ~256 rows to each of 256 experts; at 32K ~1024.
  CHECK(published_grouped_anchor(256.0, 4096, 7168) == "DeepGEMM 932 TFLOP/s (H800, 256 rows/group, published)");
  CHECK(published_grouped_anchor(255.3, 7168, 2048) == "DeepGEMM 815 TFLOP/s (H800, 256 rows/group, published)");
  CHECK(published_grouped_anchor(1022.0, 4096, 7168) == "DeepGEMM 1233 TFLOP/s (H800, 1024 rows/group, published)");
  CHECK(published_grouped_anchor(1024.0, 7168, 2048) == "DeepGEMM 925 TFLOP/s (H800, 1024 rows/group, published)");
  CHECK(published_grouped_anchor(512.0, 7168, 2048) == "DeepGEMM 916 TFLOP/s (H800, 512 rows/group, published)");
}

TEST_CASE("no published grouped rate is claimed for other shapes or far-off rows per expert", "[bench][published]") {
  CHECK(published_grouped_anchor(256.0, 3072, 4096).empty());  // Qwen3-235B's gate_up: not in the table
  CHECK(published_grouped_anchor(256.0, 7168, 4096).empty());  // n and k of the wrong GEMM
  CHECK(published_grouped_anchor(130.0, 4096, 7168).empty());  // half the table's smallest groups
  CHECK(published_grouped_anchor(2048.0, 4096, 7168).empty());  // twice its largest
  // The edges of the factor of 1.25 around the table's 256 rows.
  CHECK_FALSE(published_grouped_anchor(320.0, 4096, 7168).empty());
  CHECK(published_grouped_anchor(321.0, 4096, 7168).empty());
}

}  // namespace paratwin::bench
