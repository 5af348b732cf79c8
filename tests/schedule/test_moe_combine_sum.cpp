// All-to-all MoE: each token's sum of the rows the expert ranks send back is an op of its own (moe.combine_sum, a
// kMoeUnpermute with out_rows), between the combine all-to-all and the residual add that takes the MoE output, with
// the bytes of exactly the returned rows and the rank's tokens; the expert side's unpermute writes exactly its
// received tokens. Gather mode's reduce-scatter already sums, so it has no such op.
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "models/schedule_json.hpp"
#include "tests/schedule/schedule_test_util.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

std::int64_t sum_of(const std::vector<std::int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::int64_t{0});
}

bool depends_on(const Op& op, const Op& on) {
  return std::find(op.deps.begin(), op.deps.end(), on.index) != op.deps.end();
}

// Layers [first, last] of every rank of an all-to-all schedule: the sum reads the combine's returned rows (bf16)
// into the layer's tokens and feeds the op that takes the MoE output (`consumer`, a function of the layer).
template <typename Consumer>
void require_combine_sums(const Schedule& s, const ModelSpec& model, int first, int last, Consumer consumer) {
  const std::int64_t H = model.hidden_size, row_bytes = 2 * H;
  // Dispatched rows: fp8 with a scale per 128 values for fp8 models (moe_layer.cpp), else bf16.
  const std::int64_t dispatch_row_bytes = model.weight_dtype == DType::kFp8 ? H + (H + 127) / 128 * 4 : row_bytes;
  for (std::size_t rank = 0; rank < s.ranks.size(); ++rank) {
    const auto& ops = s.ranks[rank];
    for (int layer = first; layer <= last; ++layer) {
      INFO("rank " << rank << ", layer " << layer);
      const auto L = fmt::format("L{}.moe.", layer);
      const auto& dispatch = std::get<CollectiveOp>(require_op(ops, L + "dispatch_all_to_all").body);
      const auto& combine_op = require_op(ops, L + "combine_all_to_all");
      const auto& combine = std::get<CollectiveOp>(combine_op.body);
      const auto& sum_op = require_op(ops, L + "combine_sum");
      REQUIRE(std::holds_alternative<ComputeOp>(sum_op.body));
      const auto& sum = std::get<ComputeOp>(sum_op.body);
      const auto tokens = std::get<ComputeOp>(require_op(ops, L + "add_norm").body).shape.m;
      const auto returned_rows = sum_of(combine.recv_bytes) / row_bytes;
      CHECK(sum.kind == ComputeKind::kMoeUnpermute);
      CHECK(sum.shape.m == returned_rows);
      CHECK(sum.shape.n == H);
      CHECK(sum.shape.out_rows == tokens);
      CHECK(returned_rows >= tokens);  // every token chose an expert somewhere
      CHECK(sum.bytes == static_cast<double>(returned_rows * H * 2 + returned_rows * 8 + tokens * H * 2));
      CHECK(sum_op.deps == std::vector<int>{combine_op.index});
      CHECK(depends_on(consumer(ops, layer), sum_op));
      const auto& unpermute = std::get<ComputeOp>(require_op(ops, L + "unpermute").body);
      CHECK(unpermute.shape.out_rows == sum_of(dispatch.recv_bytes) / dispatch_row_bytes);  // the tokens received
    }
  }
}

}  // namespace

TEST_CASE("all-to-all MoE: the token side's sum of the returned rows is an op with exactly their bytes",
          "[schedule][moe]") {
  SECTION("Qwen3-30B-A3B, CP 4, EP 4: the sum feeds the next layer's fused add + norm, or the last layer's add") {
    const auto model = load_model("qwen3-30b-a3b");
    const int layers = 3;
    const auto s = build_schedule(model, cp_config(4, 4, 4), prefill(2048, layers));
    REQUIRE(s.meta.moe_mode == MoeMode::kAllToAll);
    require_combine_sums(s, model, 0, layers - 1, [&](const std::vector<Op>& ops, int layer) -> const Op& {
      return layer + 1 < layers ? require_op(ops, fmt::format("L{}.attn.add_norm", layer + 1))
                                : require_op(ops, fmt::format("L{}.moe.residual_add", layer));
    });
    CHECK(schedule_violations(s).empty());
    CHECK(schedule_from_json(schedule_to_json(s), "round trip") == s);  // out_rows survives
  }
  SECTION("decode, DP attention 4: a few tokens per rank") {
    ScheduleOptions decode;
    decode.phase = Phase::kDecode;
    decode.prompt_tokens = 4096;
    decode.batch = 8;
    decode.layers = 2;
    const auto model = load_model("qwen3-30b-a3b");
    const auto s = build_schedule(model, cp_config(4, 1, 4, 1, 4), decode);
    REQUIRE(s.meta.moe_mode == MoeMode::kAllToAll);
    require_combine_sums(s, model, 0, 1, [&](const std::vector<Op>& ops, int layer) -> const Op& {
      return layer == 0 ? require_op(ops, "L1.attn.add_norm") : require_op(ops, "L1.moe.residual_add");
    });
    CHECK(schedule_violations(s).empty());
  }
  SECTION("DeepSeek-V3.2 (fp8 dispatch, shared experts), CP 4, EP 4: the sum feeds the shared experts' add") {
    const auto model = load_model("deepseek-v3.2");
    const auto s = build_schedule(model, cp_config(4, 4, 4), prefill(4096, 5));
    REQUIRE(s.meta.moe_mode == MoeMode::kAllToAll);
    require_combine_sums(s, model, 3, 4, [&](const std::vector<Op>& ops, int layer) -> const Op& {
      return require_op(ops, fmt::format("L{}.moe.shared_add", layer));
    });
    CHECK(schedule_violations(s).empty());
  }
}

TEST_CASE("gather-mode MoE sums in its reduce-scatter: no combine_sum, the unpermute writes m / topk rows",
          "[schedule][moe]") {
  auto options = prefill(2048, 2);
  options.moe_mode = MoeMode::kGather;
  const auto model = load_model("qwen3-30b-a3b");
  const auto s = build_schedule(model, cp_config(4, 4), options);
  for (const auto& ops : s.ranks) {
    CHECK(find_op(ops, "L0.moe.combine_sum") == nullptr);
    const auto& unpermute = std::get<ComputeOp>(require_op(ops, "L0.moe.unpermute").body);
    CHECK(unpermute.shape.out_rows == 0);
    CHECK(unpermute.shape.topk == model.moe->experts_per_token);
  }
}
