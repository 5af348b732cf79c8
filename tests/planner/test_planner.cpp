#include <algorithm>
#include <catch2/catch.hpp>
#include <limits>

#include "planner/evaluate.hpp"
#include "planner/planner.hpp"
#include "planner/results_file.hpp"
#include "tests/planner/planner_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;
using namespace paratwin::plan;

namespace {

PlanRun two_jobs() {
  PlanRun run;
  run.jobs = 2;
  return run;
}

Candidate layout(int tp, int cp, int ep = 1, MoeMode mode = MoeMode::kGather) {
  Candidate c;
  c.config.tp_size = tp;
  c.config.attn_cp_size = cp;
  c.config.ep_size = ep;
  c.moe_mode = mode;
  c.nodes = 1;
  c.gpus = tp;
  return c;
}

}  // namespace

TEST_CASE("the best layout is never worse than layouts pruned as slower, re-simulated", "[planner][ranking]") {
  auto request = test::small_plan("llama-3.1-8b", 1, 16384, 2);
  request.top = 1;
  request.wave_size = 4;
  const auto result = run_plan(request, two_jobs());
  REQUIRE(!result.ranking.layouts.empty());
  const auto& best = result.ranking.layouts.front();
  std::vector<std::size_t> pruned;
  for (std::size_t i = 0; i < result.kept.size(); ++i) {
    if (result.outcomes[i] && result.outcomes[i]->status == OutcomeStatus::kPruned) {
      pruned.push_back(i);
    }
  }
  REQUIRE(!pruned.empty());  // the bound must prune something here, or this test checks nothing
  CHECK(result.counts.simulated + result.counts.pruned + result.counts.failed + result.counts.reused ==
        static_cast<std::int64_t>(result.kept.size()));
  // A sample spread over the pruned layouts, simulated without a cut.
  for (std::size_t s = 0; s < std::min<std::size_t>(3, pruned.size()); ++s) {
    const auto& kept = result.kept[pruned[s * (pruned.size() - 1) / 2]];
    INFO(kept.candidate.id(request.model));
    const auto outcome = evaluate(request, kept.candidate, PruneCut{}, /*isolate_process=*/true);
    REQUIRE(outcome.status == OutcomeStatus::kSimulated);
    CHECK(outcome.lower_bound_s <= outcome.latency_s);
    CHECK(outcome.latency_s >= best.outcome.latency_s);
  }
  // Every ranked layout's bound holds.
  for (const auto& l : result.ranking.layouts) CHECK(l.outcome.lower_bound_s <= l.outcome.latency_s);
}

TEST_CASE("pruning keeps the top layouts and the Pareto front exact", "[planner][ranking]") {
  auto request = test::small_plan("llama-3.1-8b", 1, 8192, 2);
  request.node_counts = {1, 2};
  request.top = 3;
  request.wave_size = 4;
  const auto pruned = run_plan(request, two_jobs());
  request.prune = false;
  const auto full = run_plan(request, two_jobs());
  REQUIRE(full.ranking.layouts.size() >= 3);
  CHECK(full.counts.pruned == 0);
  CHECK(pruned.counts.pruned > 0);
  for (std::size_t i = 0; i < 3; ++i) CHECK(pruned.ranking.layouts[i].id == full.ranking.layouts[i].id);
  const auto front = [](const PlanResult& r) {
    std::vector<std::string> ids;
    for (const auto i : r.ranking.pareto) ids.push_back(r.ranking.layouts[i].id);
    return ids;
  };
  CHECK(front(pruned) == front(full));
  // The front: fewer GPUs first, each strictly faster than everything on as many GPUs or fewer.
  for (const auto i : full.ranking.pareto) {
    const auto& f = full.ranking.layouts[i];
    for (const auto& other : full.ranking.layouts) {
      if (other.candidate.gpus <= f.candidate.gpus && other.id != f.id) {
        CHECK(other.outcome.latency_s >= f.outcome.latency_s);
      }
    }
  }
}

TEST_CASE("doubling the prompt on a fixed layout at least doubles the attention time", "[planner][shape]") {
  auto request = test::small_plan("llama-3.1-8b", 1, 8192, 2);
  request.prune = false;
  const auto c = layout(8, 1);
  const auto short_prompt = evaluate(request, c, PruneCut{}, true);
  request.workload.prompt_tokens = 16384;
  const auto long_prompt = evaluate(request, c, PruneCut{}, true);
  REQUIRE(short_prompt.status == OutcomeStatus::kSimulated);
  REQUIRE(long_prompt.status == OutcomeStatus::kSimulated);
  CHECK(short_prompt.attention_s > 0);
  CHECK(long_prompt.attention_s >= 2 * short_prompt.attention_s);
}

TEST_CASE("attention CP beats no CP for DeepSeek-V3.2 128K prefill on one node", "[planner][shape]") {
  // The first 4 layers: 3 dense and one MoE layer, enough for both kinds of layers at a fraction of the cost.
  const auto request = test::small_plan("deepseek-v3.2", 1, 131072, 4);
  const auto no_cp = evaluate(request, layout(8, 1), PruneCut{}, true);
  const auto cp = evaluate(request, layout(8, 8), PruneCut{}, true);
  const auto cp_ep = evaluate(request, layout(8, 8, 8, MoeMode::kAllToAll), PruneCut{}, true);
  REQUIRE(no_cp.status == OutcomeStatus::kSimulated);
  REQUIRE(cp.status == OutcomeStatus::kSimulated);
  REQUIRE(cp_ep.status == OutcomeStatus::kSimulated);
  CHECK(cp.latency_s < no_cp.latency_s);
  CHECK(cp_ep.latency_s < no_cp.latency_s);
}

TEST_CASE("a layout that does not fit is never recommended", "[planner][memory]") {
  // Llama-3.1-70B bf16 on one node: tp 1 replicas are over memory, whatever their speed.
  const auto request = test::small_plan("llama-3.1-70b", 1, 2048, 2, 8);
  const auto result = run_plan(request, two_jobs());
  REQUIRE(!result.ranking.layouts.empty());
  CHECK(result.rejected.count.at(RejectCategory::kMemory) > 0);
  for (const auto& l : result.ranking.layouts) {
    INFO(l.id);
    CHECK(l.candidate.config.tp_size * l.candidate.config.pp_size > 1);
    CHECK(l.memory.headroom_bytes >= 0);
    CHECK(l.memory.peak_bytes <= l.memory.capacity_bytes);
  }
}

TEST_CASE("plain-DP replicas are simulated as one world, under one simulation key", "[planner][reuse]") {
  // Two replicas of a 4-GPU world serving 8 requests: each replica is the 4-GPU world with 4 requests.
  const auto replicas_request = test::small_plan("llama-3.1-8b", 1, 2048, 2, 8);
  Candidate replicas = layout(4, 1);
  replicas.config.dp_size = 2;
  replicas.gpus = 8;
  auto one_world_request = replicas_request;
  one_world_request.workload.batch = 4;
  const Candidate one_world = layout(4, 1);
  CHECK(simulation_key(replicas_request, replicas) == simulation_key(one_world_request, one_world));
  CHECK(simulation_key(replicas_request, replicas) != simulation_key(replicas_request, layout(8, 1)));
  const auto of_replicas = evaluate(replicas_request, replicas, PruneCut{}, true);
  const auto of_world = evaluate(one_world_request, one_world, PruneCut{}, true);
  REQUIRE(of_replicas.status == OutcomeStatus::kSimulated);
  CHECK(of_replicas.latency_s == of_world.latency_s);
  // Throughput per GPU counts every replica's tokens over every GPU: the same as one world alone.
  auto replicas_throughput = replicas_request;
  auto world_throughput = one_world_request;
  replicas_throughput.objective = world_throughput.objective = Objective::kThroughputPerGpu;
  CHECK(objective_score(replicas_throughput, of_replicas.latency_s, 8) ==
        Approx(objective_score(world_throughput, of_world.latency_s, 4)));
}

TEST_CASE("an interrupted plan leaves a valid results file that --resume completes", "[planner][resume]") {
  auto request = test::small_plan("llama-3.1-8b", 1, 4096, 2);
  request.wave_size = 2;
  std::string saved;
  PlanRun run = two_jobs();
  run.save = [&](const std::string& text) { saved = text; };
  // Stop as Ctrl-C would, once the first layout is in the file.
  run.interrupted = [&] { return saved.find("\"key\"") != std::string::npos; };
  const auto first = run_plan(request, run);
  CHECK(first.interrupted);
  const auto stored = read_results_file(saved, request, "saved");
  CHECK(static_cast<std::int64_t>(stored.size()) < first.simulation_keys);

  PlanRun resume = two_jobs();
  resume.resume_text = saved;
  resume.save = [&](const std::string& text) { saved = text; };
  const auto second = run_plan(request, resume);
  CHECK(!second.interrupted);
  CHECK(second.counts.resumed > 0);
  CHECK(second.counts.resumed + second.counts.simulated + second.counts.pruned + second.counts.reused +
            second.counts.failed ==
        static_cast<std::int64_t>(second.kept.size()));
  CHECK(saved.find("\"complete\": true") != std::string::npos);

  // A third run takes everything from the file and simulates nothing, with the same ranking.
  PlanRun again = two_jobs();
  again.resume_text = saved;
  const auto third = run_plan(request, again);
  CHECK(third.counts.simulated == 0);
  CHECK(third.counts.resumed == static_cast<std::int64_t>(third.kept.size()));
  REQUIRE(third.ranking.layouts.size() == second.ranking.layouts.size());
  for (std::size_t i = 0; i < third.ranking.layouts.size(); ++i) {
    CHECK(third.ranking.layouts[i].id == second.ranking.layouts[i].id);
    CHECK(third.ranking.layouts[i].outcome == second.ranking.layouts[i].outcome);
  }
}

TEST_CASE("resuming refuses a results file written for other inputs, naming the difference", "[planner][resume]") {
  auto request = test::small_plan("llama-3.1-8b", 1, 4096, 2);
  const std::string text = results_file_text(request, {}, false);
  auto other = request;
  other.workload.prompt_tokens = 8192;
  CHECK_THROWS_WITH(read_results_file(text, other, "old.json"),
                    Catch::Contains("old.json") && Catch::Contains("prompt-len 4096 there, 8192 in this run"));
  other = request;
  other.objective = Objective::kThroughputPerGpu;
  CHECK_THROWS_WITH(read_results_file(text, other, "old.json"), Catch::Contains("objective"));
  CHECK_THROWS_WITH(read_results_file("{\"a\": 1}", request, "x.json"), Catch::Contains("not a plan results file"));
  CHECK_THROWS_WITH(read_results_file("not json", request, "x.json"), Catch::Contains("not JSON"));
}

TEST_CASE("outcomes round-trip exactly through their encoding", "[planner][resume]") {
  Outcome o;
  o.status = OutcomeStatus::kSimulated;
  o.lower_bound_s = 0.1 + 0.2;
  o.latency_s = 1.0 / 3.0;
  o.exposed_comm_s = 1e-7;
  o.attention_s = 2.5e-3;
  o.compute_utilization = 0.4321;
  o.layers_reused = 3;
  o.wall_s = 0.25;
  CHECK(decode_outcome(encode_outcome(o)) == o);
  CHECK_THROWS_AS(decode_outcome("{}"), Error);
}
