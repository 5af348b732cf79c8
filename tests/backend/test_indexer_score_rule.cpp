// Which kernel family the CUDA backend binds a DSA indexer-score op to (backend/cuda_plan/indexer_score_rule.hpp): the
// fp8 Hopper kernel for fp8 ops at 64 heads x 128 on sm_90, the bf16 kernels for bf16 ops and for fp8 ops the fp8
// kernel cannot take, each with its reason.
#include <catch2/catch.hpp>
#include <cstdint>

#include "backend/cuda_plan/indexer_score_rule.hpp"

using namespace paratwin::cuda_plan;

namespace {

// DeepSeek-V3.2's indexer at a 16K prefill on an H200 (fp8, as models/builders emits it).
IndexerScoreShape deepseek_on_h200() {
  IndexerScoreShape s;
  s.fp8 = true;
  s.queries = 16384;
  s.keys = 16384;
  s.heads = 64;
  s.head_dim = 128;
  s.compute_capability = 90;
  return s;
}

}  // namespace

TEST_CASE("fp8 indexer ops run the fp8 kernel on sm_90 at 64 heads x 128", "[cuda_plan][indexer]") {
  const auto s = deepseek_on_h200();
  CHECK(fp8_indexer_unsupported_reason(s).empty());
  CHECK(indexer_score_path(s) == IndexerScorePath::kFp8Wgmma);
  auto few = s;  // a round-robin CP rank's short run of queries over the whole context
  few.queries = 3;
  few.keys = 1;
  CHECK(indexer_score_path(few) == IndexerScorePath::kFp8Wgmma);
}

TEST_CASE("bf16 indexer ops stay on the bf16 kernels whatever the GPU", "[cuda_plan][indexer]") {
  auto s = deepseek_on_h200();
  s.fp8 = false;
  CHECK(fp8_indexer_unsupported_reason(s).empty());  // nothing to fall back from
  CHECK(indexer_score_path(s) == IndexerScorePath::kBf16);
}

TEST_CASE("fp8 indexer ops the fp8 kernel cannot take fall back to the bf16 kernels, saying why",
          "[cuda_plan][indexer]") {
  auto ampere = deepseek_on_h200();
  ampere.compute_capability = 80;
  CHECK(indexer_score_path(ampere) == IndexerScorePath::kBf16);
  CHECK(fp8_indexer_unsupported_reason(ampere) == "the GPU is sm_80; the fp8 indexer kernel runs on sm_90 only");
  auto blackwell = deepseek_on_h200();
  blackwell.compute_capability = 100;  // sm_90a code does not run on later GPUs
  CHECK(indexer_score_path(blackwell) == IndexerScorePath::kBf16);

  auto heads = deepseek_on_h200();
  heads.heads = 32;
  CHECK(indexer_score_path(heads) == IndexerScorePath::kBf16);
  CHECK(fp8_indexer_unsupported_reason(heads) == "32 heads x 128 dims: the fp8 indexer kernel takes 64 x 128 only");
  auto dims = deepseek_on_h200();
  dims.head_dim = 64;
  CHECK(indexer_score_path(dims) == IndexerScorePath::kBf16);

  auto too_many = deepseek_on_h200();
  too_many.queries = std::int64_t{1} << 26;  // 2^32 q rows: past the copy engine's coordinates
  CHECK(indexer_score_path(too_many) == IndexerScorePath::kBf16);
  CHECK(fp8_indexer_unsupported_reason(too_many) ==
        "67108864 queries x 16384 keys: empty, or past the copy engine's 32-bit coordinates");
  auto none = deepseek_on_h200();
  none.keys = 0;
  CHECK(indexer_score_path(none) == IndexerScorePath::kBf16);
}

TEST_CASE("the fp8 indexer's coordinate bound sits at the copy engine's 32-bit limit", "[cuda_plan][indexer]") {
  // q rows: (queries + one block of 8) · 64 ≤ 2^31 − 1; keys plus one 64-key tile likewise.
  const std::int64_t max_queries = 2147483647 / 64 - 8;
  CHECK(fp8_indexer_coordinates_fit(max_queries, 1));
  CHECK_FALSE(fp8_indexer_coordinates_fit(max_queries + 1, 1));
  CHECK(fp8_indexer_coordinates_fit(1, 2147483647 - 64));
  CHECK_FALSE(fp8_indexer_coordinates_fit(1, 2147483647 - 63));
  CHECK_FALSE(fp8_indexer_coordinates_fit(0, 1));
}
