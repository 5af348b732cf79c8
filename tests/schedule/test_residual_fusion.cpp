// The builders fuse each residual add into the RMSNorm after it (kAddRmsNorm, models/builders ResidualStream) where
// the norm covers the same rows and nothing else reads the sum first, and keep the add alone elsewhere: the stage's
// last layer (before the head or a PP send) and a MoE layer under attention TP, whose add is followed by a gather.
// On every path (CP algorithms, PP micro-batches, decode, MoE modes, MLA) each add still runs once, after the op that
// last wrote the stream.
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "models/op_costs.hpp"
#include "models/schedule_json.hpp"
#include "models/schedule_strings.hpp"
#include "tests/schedule/schedule_test_util.hpp"

using namespace paratwin;
using namespace paratwin::test;

namespace {

const ComputeOp& compute_of(const std::vector<Op>& ops, const std::string& name) {
  const Op& op = require_op(ops, name);
  INFO(name);
  REQUIRE(std::holds_alternative<ComputeOp>(op.body));
  return std::get<ComputeOp>(op.body);
}

int count_kind(const std::vector<Op>& ops, ComputeKind kind) {
  return static_cast<int>(std::count_if(ops.begin(), ops.end(), [&](const Op& op) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    return c != nullptr && c->kind == kind;
  }));
}

int index_of(const std::vector<Op>& ops, const std::string& name) {
  return require_op(ops, name).index;
}

// The indices of the named ops, in the ascending order the emitter keeps dependencies in.
std::vector<int> indices(const std::vector<Op>& ops, const std::vector<std::string>& names) {
  std::vector<int> out;
  for (const auto& name : names) out.push_back(index_of(ops, name));
  std::sort(out.begin(), out.end());
  return out;
}

int count_kind_in_micro_batch(const std::vector<Op>& ops, ComputeKind kind, int micro_batch) {
  return static_cast<int>(std::count_if(ops.begin(), ops.end(), [&](const Op& op) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    return c != nullptr && c->kind == kind && op.micro_batch == micro_batch;
  }));
}

}  // namespace

TEST_CASE("dense layers: every add but the stage's last is fused into the next norm", "[schedule][fusion]") {
  const auto model = load_model("llama-3.1-8b");
  const auto s = build_schedule(model, cp_config(1, 1), prefill(4096, 3));
  const auto& ops = s.ranks[0];
  // 3 layers: the first input norm alone, then attention add + MLP norm and MLP add + next input norm fused (5), and
  // the last layer's MLP add alone before the head's norm.
  CHECK(count_kind(ops, ComputeKind::kAddRmsNorm) == 5);
  CHECK(count_kind(ops, ComputeKind::kResidualAdd) == 1);
  CHECK(count_kind(ops, ComputeKind::kRmsNorm) == 2);  // L0.attn.input_norm, head.final_norm
  CHECK(compute_of(ops, "L0.attn.input_norm").kind == ComputeKind::kRmsNorm);
  for (const int layer : {0, 1, 2}) {
    const auto mlp = compute_of(ops, fmt::format("L{}.mlp.add_norm", layer));
    CHECK(mlp.shape.m == 4096);
    CHECK(mlp.shape.n == model.hidden_size);
    CHECK(find_op(ops, fmt::format("L{}.attn.residual_add", layer)) == nullptr);
    CHECK(find_op(ops, fmt::format("L{}.mlp.norm", layer)) == nullptr);
  }
  CHECK(compute_of(ops, "L1.attn.add_norm").kind == ComputeKind::kAddRmsNorm);
  CHECK(compute_of(ops, "L2.attn.add_norm").kind == ComputeKind::kAddRmsNorm);
  CHECK(find_op(ops, "L0.mlp.residual_add") == nullptr);
  CHECK(compute_of(ops, "L2.mlp.residual_add").kind == ComputeKind::kResidualAdd);
  // The fused op waits for the update and for the op that last wrote the stream; what read the stream before
  // (the next add's residual operand) now reads the fused op.
  const auto& fused = *find_op(ops, "L1.attn.add_norm");
  CHECK(fused.deps == indices(ops, {"L0.mlp.down_proj", "L0.mlp.add_norm"}));
  CHECK(find_op(ops, "L1.mlp.add_norm")->deps == indices(ops, {"L1.attn.o_proj", "L1.attn.add_norm"}));
  CHECK(find_op(ops, "L2.mlp.residual_add")->deps == indices(ops, {"L2.mlp.down_proj", "L2.mlp.add_norm"}));
  CHECK(find_op(ops, "head.final_norm")->deps == indices(ops, {"L2.mlp.residual_add"}));
  CHECK(schedule_violations(s).empty());
}

TEST_CASE("fusion saves the norm's re-read of each sum and one launch, and the work stays the same",
          "[schedule][fusion]") {
  const auto model = load_model("qwen3-235b-a22b");
  const std::int64_t tokens = 8192;
  const int layers = 4;
  const auto s = build_schedule(model, cp_config(1, 1), prefill(tokens, layers));
  const auto& ops = s.ranks[0];
  const int fused = count_kind(ops, ComputeKind::kAddRmsNorm);
  CHECK(fused == 2 * layers - 1);  // every add but the last layer's, which has no norm of its rows after it
  // One launch per fusion saved: 2 adds and 2 norms per layer (+ the head's norm) run as fused + alone ops.
  CHECK(fused + count_kind(ops, ComputeKind::kResidualAdd) == 2 * layers);
  const auto stream_norms = std::count_if(ops.begin(), ops.end(), [](const Op& op) {
    const auto* c = std::get_if<ComputeOp>(&op.body);  // the norms of the residual stream, not Qwen3's q/k norms
    return c != nullptr && c->kind == ComputeKind::kRmsNorm && op.name.find("qk_norm") == std::string::npos;
  });
  CHECK(fused + stream_norms == 2 * layers + 1);  // + the head's final norm
  for (const auto& op : ops) {
    const auto* c = std::get_if<ComputeOp>(&op.body);
    if (c == nullptr || c->kind != ComputeKind::kAddRmsNorm) continue;
    // The unfused pair of the same rows, costed by the same formulas.
    ComputeOp add{ComputeKind::kResidualAdd, c->shape, c->dtype};
    ComputeOp norm{ComputeKind::kRmsNorm, c->shape, c->dtype};
    fill_cost(add);
    fill_cost(norm);
    INFO(op.name);
    CHECK(c->flops == Approx(add.flops + norm.flops));
    const double sum_bytes = static_cast<double>(c->shape.m * c->shape.n) * dtype_bytes(c->dtype);
    CHECK(c->bytes == Approx(add.bytes + norm.bytes - sum_bytes));
  }
}

TEST_CASE("the add stays alone where the next norm sees other rows or there is none", "[schedule][fusion]") {
  SECTION("MoE under attention TP: the MoE runs on a 1/attn_tp share and gathers after its add") {
    const auto model = load_model("qwen3-30b-a3b");
    const auto s = build_schedule(model, cp_config(4, 2, 4), prefill(2048, 2));  // attention TP 2, EP 4
    const auto& ops = s.ranks[0];
    const auto moe_norm = compute_of(ops, "L0.moe.add_norm");  // attention's reduce-scatter + add: same share
    CHECK(moe_norm.shape.m == (1024 + 1) / 2);
    CHECK(compute_of(ops, "L0.moe.residual_add").kind == ComputeKind::kResidualAdd);
    CHECK(index_of(ops, "L0.moe.attn_tp_all_gather") > index_of(ops, "L0.moe.residual_add"));
    CHECK(compute_of(ops, "L1.attn.input_norm").kind == ComputeKind::kRmsNorm);  // on the gathered rows
    CHECK(find_op(ops, "L1.attn.add_norm") == nullptr);
    CHECK(schedule_violations(s).empty());
  }
  SECTION("pipeline stages: each stage's last add runs before the send, each stage's first norm alone") {
    const auto model = load_model("llama-3.1-8b");
    const auto s = build_schedule(model, cp_config(1, 1, 1, 2), prefill(2048, 4));
    const auto& first = s.ranks[0];
    const auto& second = s.ranks[1];
    CHECK(find_op(first, "pp_send")->deps == indices(first, {"L1.mlp.residual_add"}));
    CHECK(compute_of(second, "L2.attn.input_norm").kind == ComputeKind::kRmsNorm);
    CHECK(compute_of(second, "L3.attn.add_norm").kind == ComputeKind::kAddRmsNorm);
    // Per micro-batch, 2 layers a stage: 3 fused, the last add alone.
    CHECK(count_kind_in_micro_batch(first, ComputeKind::kAddRmsNorm, 0) == 3);
    CHECK(count_kind_in_micro_batch(second, ComputeKind::kAddRmsNorm, 0) == 3);
    CHECK(count_kind_in_micro_batch(first, ComputeKind::kResidualAdd, 0) == 1);
    CHECK(schedule_violations(s).empty());
  }
}

TEST_CASE("the fused op's kind reads and writes as add_rms_norm and survives the JSON round trip",
          "[schedule][fusion]") {
  CHECK(to_string(ComputeKind::kAddRmsNorm) == "add_rms_norm");
  CHECK(parse_compute_kind("add_rms_norm") == ComputeKind::kAddRmsNorm);
  const auto s = build_schedule(load_model("qwen3-30b-a3b"), cp_config(4, 4, 4), prefill(4096, 2));
  CHECK(schedule_from_json(schedule_to_json(s), "round trip") == s);
}

namespace {

bool is_kind(const Op& op, ComputeKind kind) {
  const auto* c = std::get_if<ComputeOp>(&op.body);
  return c != nullptr && c->kind == kind;
}

// An op whose output is the whole residual stream (or, for a fused op, the stream with its update added).
bool writes_stream(const Op& op) {
  return is_kind(op, ComputeKind::kAddRmsNorm) || op.name.ends_with(".residual_add") ||
         is_kind(op, ComputeKind::kEmbedding) || op.name.ends_with("pp_recv") ||
         op.name.ends_with(".moe.attn_tp_all_gather");
}

// Per rank and micro-batch of `s`: every layer's two residual adds (attention, MLP) run exactly once, fused into the
// next norm or alone; a fused op depends on its update and on the latest op that wrote the stream; an add runs alone
// only at the stage's last layer or before a MoE's attention-TP gather, and every other layer-opening norm is fused.
void require_each_add_once(const Schedule& s, const std::string& what) {
  INFO(what);
  for (std::size_t rank = 0; rank < s.ranks.size(); ++rank) {
    INFO("rank " << rank);
    const auto& ops = s.ranks[rank];
    for (int mb = 0; mb < s.meta.micro_batches; ++mb) {
      INFO("micro-batch " << mb);
      int first_layer = -1, last_layer = -1, fused = 0, alone = 0, gathers = 0, plain_norms = 0;
      int stream = -1;  // the latest op of this micro-batch that wrote the stream
      for (const auto& op : ops) {
        if (op.micro_batch != mb) continue;
        if (op.layer >= 0) {
          if (first_layer < 0) first_layer = op.layer;
          last_layer = op.layer;
        }
        if (is_kind(op, ComputeKind::kAddRmsNorm)) {
          ++fused;
          INFO(op.name);
          REQUIRE(op.deps.size() == 2);
          CHECK(std::find(op.deps.begin(), op.deps.end(), stream) != op.deps.end());
          const int update = op.deps[0] == stream ? op.deps[1] : op.deps[0];
          CHECK_FALSE(writes_stream(ops[static_cast<std::size_t>(update)]));
        } else if (op.name.ends_with(".residual_add")) {
          ++alone;
          INFO(op.name);
          CHECK(std::find(op.deps.begin(), op.deps.end(), stream) != op.deps.end());
        } else if (op.name.ends_with(".attn.input_norm") || op.name.ends_with(".mlp.norm") ||
                   op.name.ends_with(".moe.norm")) {
          ++plain_norms;
          INFO(op.name);
          REQUIRE(op.deps.size() == 1);
          CHECK(op.deps[0] == stream);
        }
        if (op.name.ends_with(".moe.attn_tp_all_gather")) ++gathers;
        if (writes_stream(op)) stream = op.index;
      }
      if (first_layer < 0) continue;  // no layer of this micro-batch on this rank
      const int layers = last_layer - first_layer + 1;
      CHECK(fused + alone == 2 * layers);
      // Alone: the stage's last add, and each add before a MoE's gather (the last layer's add may be both).
      const bool last_gathers = std::any_of(ops.begin(), ops.end(), [&](const Op& op) {
        return op.micro_batch == mb && op.layer == last_layer && op.name.ends_with(".moe.attn_tp_all_gather");
      });
      CHECK(alone == gathers + (last_gathers ? 0 : 1));
      // Plain norms: the stage's first input norm, and the input norm after each gather but the last layer's.
      CHECK(plain_norms == 1 + gathers - (last_gathers ? 1 : 0));
    }
  }
}

}  // namespace

TEST_CASE("on every path each residual add runs once, fused into the norm of its rows or alone, after the stream",
          "[schedule][fusion]") {
  struct Case {
    std::string what;
    std::string model;
    ParallelConfig config;
    ScheduleOptions options;
  };
  ScheduleOptions decode;
  decode.phase = Phase::kDecode;
  decode.prompt_tokens = 4096;
  decode.batch = 8;
  decode.layers = 3;
  ScheduleOptions chunked = prefill(4096, 4);
  chunked.micro_batches = 3;
  ScheduleOptions gather = prefill(2048, 3);
  gather.moe_mode = MoeMode::kGather;
  std::vector<Case> cases = {
      {"dense tp2 cp2 all-gather", "llama-3.1-8b", cp_config(4, 2), prefill(4096, 3)},
      {"dense cp4 ring", "llama-3.1-8b", cp_config(4, 4), prefill(4096, 3, CpSplit::kZigzag, CpAlgorithm::kRing)},
      {"dense cp4 ulysses", "llama-3.1-8b", cp_config(4, 4), prefill(4096, 3, CpSplit::kZigzag, CpAlgorithm::kUlysses)},
      {"dense pp2 cp2, 3 micro-batches", "llama-3.1-8b", cp_config(2, 2, 1, 2), chunked},
      {"dense decode tp2", "llama-3.1-8b", cp_config(2, 1), decode},
      {"MoE cp4 ep4 all-to-all", "qwen3-30b-a3b", cp_config(4, 4, 4), prefill(2048, 3)},
      {"MoE attention TP 2, ep4 (reduce-scatter, gather)", "qwen3-30b-a3b", cp_config(4, 2, 4), prefill(2048, 3)},
      {"MoE tp4 cp4 gather", "qwen3-30b-a3b", cp_config(4, 4), gather},
      {"MoE pp2 attention TP 2", "qwen3-30b-a3b", cp_config(4, 2, 4, 2), prefill(2048, 4)},
      {"MoE decode dp4 attention", "qwen3-30b-a3b", cp_config(4, 1, 4, 1, 4), decode},
      {"MLA + DSA cp4 ep4, dense first layers", "deepseek-v3.2", cp_config(4, 4, 4), prefill(4096, 5)},
      {"MLA + DSA attention TP 2", "deepseek-v3.2", cp_config(4, 2, 4), prefill(4096, 5)},
  };
  for (const auto& c : cases) {
    const auto s = build_schedule(load_model(c.model), c.config, c.options);
    require_each_add_once(s, c.what);
    CHECK(schedule_violations(s).empty());
  }
}
