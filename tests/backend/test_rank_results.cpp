// How a CUDA run's ranks are split over mpirun's processes, and the bytes in which processes exchange their ranks'
// results.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "backend/cuda_plan/rank_results.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::cuda_plan;

namespace {

RankResults sample(int rank) {
  RankResults r;
  r.rank = rank;
  r.step_s = {0.0125, 0.0121 + rank};
  r.op_start_s = {{0, 1e-3, 2e-3}, {0, 1.5e-3, 2.5e-3}};
  r.op_end_s = {{1e-3, 2e-3, 3e-3}, {1.5e-3, 2.5e-3, 3.5e-3}};
  r.device_bytes = (std::int64_t{5} << 30) + rank;
  r.generic_ops =
      rank == 0 ? std::vector<std::string>{"L0.mla", "name with\0 a zero byte"} : std::vector<std::string>{};
  r.attention_calls = {2, 0, rank};
  r.moe_gemm_ops = {rank, 4};
  r.moe_gemm_fp8_ops = 2 * rank + 1;
  r.moe_gemm_fp8_kernel_ops = 3 * rank + 2;
  r.moe_gemm_fallbacks =
      rank == 2 ? std::vector<std::string>{"n 192 x k 160 is off the kernel's tiles"} : std::vector<std::string>{};
  r.indexer_fp8_ops = 4 * rank + 1;
  r.indexer_bf16_ops = rank;
  r.indexer_fp8_fallbacks = rank == 3 ? std::vector<std::string>{"the GPU is sm_80; the fp8 indexer kernel runs on "
                                                                 "sm_90 only"}
                                      : std::vector<std::string>{};
  r.outputs.request = {0, 0, 1};
  r.outputs.position = {3, 7, rank};
  r.outputs.hidden_size = 2;
  r.outputs.hidden = {1.f, -2.f, 0.5f, 0.25f, -0.f, 3e-8f};
  r.outputs.logits = rank == 1 ? std::vector<float>{0.1f, 0.2f} : std::vector<float>{};
  return r;
}

}  // namespace

TEST_CASE("rank results survive the bytes that processes exchange", "[cuda_plan][mpi]") {
  const std::vector<RankResults> results = {sample(2), sample(3), RankResults{}};
  const auto bytes = encode_rank_results(results);
  CHECK(decode_rank_results(bytes) == results);
  CHECK(decode_rank_results(encode_rank_results({})).empty());
}

TEST_CASE("truncated or padded rank results are refused, never read past their end", "[cuda_plan][mpi]") {
  const auto bytes = encode_rank_results({sample(0), sample(1)});
  for (std::size_t cut : {std::size_t{0}, std::size_t{3}, std::size_t{8}, bytes.size() / 2, bytes.size() - 1}) {
    INFO("cut at " << cut);
    if (cut == 0) {
      CHECK_THROWS_AS(decode_rank_results(bytes.substr(0, 1)), InternalError);
    } else {
      CHECK_THROWS_AS(decode_rank_results(bytes.substr(0, cut)), InternalError);
    }
  }
  CHECK_THROWS_AS(decode_rank_results(bytes + "x"), InternalError);
  // A length prefix claiming more elements than bytes remain (a corrupt message) is refused before allocating.
  std::string huge = bytes;
  huge[0] = '\xff';
  huge[7] = '\x7f';
  CHECK_THROWS_AS(decode_rank_results(huge), InternalError);
}

TEST_CASE("mpirun processes drive contiguous blocks of ranks, one node or one GPU each", "[cuda_plan][mpi]") {
  CHECK(process_ranks(8, 0, 1) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(process_ranks(16, 1, 2) == std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15});  // one per node of 8 GPUs
  CHECK(process_ranks(4, 3, 4) == std::vector<int>{3});                              // one per GPU
  // Every rank is driven by exactly one process.
  for (const int count : {1, 2, 4, 8}) {
    std::vector<int> seen(8, 0);
    for (int p = 0; p < count; ++p)
      for (const int r : process_ranks(8, p, count)) ++seen[static_cast<std::size_t>(r)];
    CHECK(seen == std::vector<int>(8, 1));
  }
  try {
    (void)process_ranks(8, 0, 3);
    FAIL("3 processes for 8 ranks were accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("3 processes") && Catch::Contains("8 ranks") && Catch::Contains("-np 8"));
  }
}
