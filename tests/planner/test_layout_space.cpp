#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "models/memory_model.hpp"
#include "planner/layout_space.hpp"
#include "tests/planner/planner_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::plan;

namespace {

// Every flag set with sizes in [1, gpus], both DP modes, every CP algorithm/split and MoE mode, filtered by the
// planner's classify(): the ids of those it keeps.
std::set<std::string> brute_force_kept(const PlanRequest& request, int nodes) {
  const int gpus = nodes * request.cluster.gpus_per_node;
  std::set<std::string> kept;
  for (int tp = 1; tp <= gpus; ++tp) {
    for (int pp = 1; pp <= gpus; ++pp) {
      for (int dp = 1; dp <= gpus; ++dp) {
        for (const bool dp_attention : {false, true}) {
          // Only sizes that can use `gpus` GPUs can pass; skipping the rest keeps the loop short, not the rule.
          if (static_cast<long long>(tp) * pp * (dp_attention ? 1 : dp) != gpus) continue;
          for (int cp = 1; cp <= gpus; ++cp) {
            for (int ep = 1; ep <= gpus; ++ep) {
              for (int moe_dp = 1; moe_dp <= gpus; ++moe_dp) {
                for (const auto algo : {CpAlgorithm::kAllGather, CpAlgorithm::kRing, CpAlgorithm::kUlysses}) {
                  for (const auto split : {CpSplit::kRoundRobin, CpSplit::kZigzag}) {
                    for (const auto mode : {MoeMode::kAllToAll, MoeMode::kGather}) {
                      Candidate c;
                      c.config.tp_size = tp;
                      c.config.pp_size = pp;
                      c.config.dp_size = dp;
                      c.config.enable_dp_attention = dp_attention;
                      c.config.attn_cp_size = cp;
                      c.config.ep_size = ep;
                      c.config.moe_dp_size = moe_dp;
                      c.cp_algorithm = algo;
                      c.cp_split = split;
                      c.moe_mode = mode;
                      c.nodes = nodes;
                      c.gpus = gpus;
                      if (!classify(request, c).rejection) kept.insert(c.id(request.model));
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return kept;
}

std::set<std::string> enumerated_kept(const PlanRequest& request) {
  std::set<std::string> ids;
  const auto space = enumerate_layouts(request);
  for (const auto& k : space.kept) {
    const bool fresh = ids.insert(k.candidate.id(request.model)).second;
    CHECK(fresh);  // no layout twice
  }
  return ids;
}

}  // namespace

TEST_CASE("the enumeration keeps exactly the flag sets a brute force over all sizes keeps (dense model)",
          "[planner][enumeration]") {
  const auto request = test::small_plan("llama-3.1-8b", 1, 4096, 2, 2);
  const auto expected = brute_force_kept(request, 1);
  CHECK(expected.size() > 10);
  CHECK(enumerated_kept(request) == expected);
}

TEST_CASE("the enumeration keeps exactly the flag sets a brute force over all sizes keeps (MoE model)",
          "[planner][enumeration]") {
  const auto request = test::small_plan("qwen3-30b-a3b", 1, 4096, 2);
  const auto expected = brute_force_kept(request, 1);
  CHECK(expected.size() > 10);
  CHECK(enumerated_kept(request) == expected);
}

TEST_CASE("kept layouts fit in memory and the rejections are counted by reason", "[planner][enumeration][memory]") {
  // Llama-3.1-70B in bf16 (141 GB of weights) cannot fit on one 141 GB H200: every tp 1 layout is over memory.
  const auto request = test::small_plan("llama-3.1-70b", 1, 8192, 2);
  const auto space = enumerate_layouts(request);
  REQUIRE(!space.kept.empty());
  CHECK(space.rejected.count.at(RejectCategory::kMemory) > 0);
  CHECK(space.rejected.count.at(RejectCategory::kStructural) > 0);
  CHECK(space.generated == space.rejected.total() + static_cast<std::int64_t>(space.kept.size()));
  for (const auto& k : space.kept) {
    INFO(k.candidate.id(request.model));
    CHECK(k.candidate.config.tp_size > 1);
    const auto options = k.candidate.schedule_options(request);
    const auto memory =
        memory_request_for(options, k.candidate.config, k.candidate.moe_mode, request.cluster.gpu.memory_bytes,
                           request.mem_fraction_static, request.kv_dtype);
    for (const auto& stage : estimate_memory_per_stage(request.model, k.candidate.config, memory)) {
      CHECK(stage.fits);
    }
    CHECK(k.memory.headroom_bytes >= 0);
  }
  Candidate tp1;
  tp1.nodes = 1;
  tp1.gpus = 8;
  tp1.config.dp_size = 8;  // eight single-GPU replicas
  const auto verdict = classify(test::small_plan("llama-3.1-70b", 1, 8192, 2, 8), tp1);
  REQUIRE(verdict.rejection);
  CHECK(verdict.rejection->category == RejectCategory::kMemory);
}

TEST_CASE("SGLang's version decides which layouts are kept", "[planner][enumeration]") {
  auto request = test::small_plan("llama-3.1-8b", 2, 4096, 2);
  Candidate pp_cp;
  pp_cp.nodes = 2;
  pp_cp.gpus = 16;
  pp_cp.config.tp_size = 8;
  pp_cp.config.pp_size = 2;
  pp_cp.config.attn_cp_size = 8;
  request.sglang_version = SglangVersion::kPr17213Merge;  // PP with attention CP came with PR #19548
  const auto merge = classify(request, pp_cp);
  REQUIRE(merge.rejection);
  CHECK(merge.rejection->category == RejectCategory::kSglangRule);
  request.sglang_version = SglangVersion::kPr19548;
  CHECK(!classify(request, pp_cp).rejection);
}

TEST_CASE("launch flags are SGLang's, with the CP mode and MoE backend spelled out", "[planner][enumeration]") {
  const auto dsv32 = load_model("deepseek-v3.2");
  Candidate c;
  c.config.tp_size = 8;
  c.config.attn_cp_size = 8;
  CHECK(c.sglang_flags(dsv32) ==
        "--tp-size 8 --attn-cp-size 8 --enable-nsa-prefill-context-parallel --nsa-prefill-cp-mode round-robin-split");
  c.config.ep_size = 8;
  c.moe_mode = MoeMode::kAllToAll;
  c.cp_split = CpSplit::kZigzag;
  CHECK(c.sglang_flags(dsv32) ==
        "--tp-size 8 --attn-cp-size 8 --ep-size 8 --enable-nsa-prefill-context-parallel --nsa-prefill-cp-mode "
        "in-seq-split --moe-a2a-backend deepep");
  CHECK(c.paratwin_only_flags().empty());
  c.cp_algorithm = CpAlgorithm::kRing;
  CHECK(c.paratwin_only_flags() == "--cp-algo ring --cp-split zigzag");
}

TEST_CASE("candidate_count counts exactly the flag sets generate_candidates builds", "[planner][enumeration]") {
  for (const std::string model : {"llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3.2"}) {
    for (const auto phase : {Phase::kPrefill, Phase::kDecode}) {
      for (int nodes = 1; nodes <= 6; ++nodes) {
        auto request = test::small_plan(model, nodes, 4096, 2);
        request.workload.phase = phase;
        INFO(model << (phase == Phase::kPrefill ? " prefill" : " decode") << " on " << nodes << " nodes");
        const auto built = generate_candidates(request, nodes);
        CHECK(candidate_count(request, nodes) == static_cast<std::int64_t>(built.size()));
      }
    }
  }
}

TEST_CASE("the candidates of a node count are distinct and use all its GPUs", "[planner][enumeration]") {
  const auto request = test::small_plan("qwen3-30b-a3b", 3, 4096, 2);
  std::set<std::string> ids;
  for (const auto& c : generate_candidates(request, 3)) {
    CHECK(c.gpus == 24);
    CHECK(ids.insert(c.id(request.model)).second);
  }
}

TEST_CASE("a plan beyond the planner's flag-set limit is refused before any work, naming the flag and the limit",
          "[planner][enumeration]") {
  auto request = test::small_plan("deepseek-v3.2", 1, 4096, 2);
  request.node_counts.clear();
  for (int n = 1; n <= 4096; ++n) request.node_counts.push_back(n);
  request.cluster = load_cluster("h200-sxm", 4096);
  try {
    check_enumeration_size(request);
    FAIL("--max-nodes 4096 was accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("--max-nodes 4096") && Catch::Contains(std::to_string(kMaxFlagSets)) &&
                             Catch::Contains("smaller --max-nodes"));
  }
  CHECK_THROWS_AS(enumerate_layouts(request), Error);
  request.node_counts = {1, 2, 3, 4};
  CHECK_NOTHROW(check_enumeration_size(request));
  std::int64_t total = 0;
  for (const int n : request.node_counts) total += candidate_count(request, n);
  CHECK(total < kMaxFlagSets);
}

TEST_CASE("an interrupted enumeration stops and says so", "[planner][enumeration]") {
  const auto request = test::small_plan("qwen3-30b-a3b", 2, 4096, 2);
  const auto stopped = enumerate_layouts(request, [] { return true; });
  CHECK(stopped.interrupted);
  CHECK(stopped.generated == 0);
  CHECK(stopped.kept.empty());
  const auto whole = enumerate_layouts(request, [] { return false; });
  CHECK_FALSE(whole.interrupted);
  CHECK(whole.generated == candidate_count(request, 2));
}
