// schedule_options_violation, the planner's non-throwing check, against check_schedule_options, which build_schedule
// and every command use: over the zoo's models, structurally valid layouts of 1..16 GPUs and workloads that break each
// kind of rule (prompt shorter than the CP ranks or micro-batches, batches that do not split over DP, zigzag with
// several requests, ring with micro-batches, Ulysses over too few heads, MoE modes against EP), the violation is empty
// exactly when the check passes, and otherwise is the check's message.
#include <catch2/catch.hpp>
#include <string>

#include "models/schedule_builder.hpp"
#include "tests/schedule/schedule_test_util.hpp"
#include "topology/error.hpp"

using namespace paratwin;

TEST_CASE("schedule_options_violation returns exactly the message check_schedule_options throws", "[schedule]") {
  int checked = 0, violations = 0;
  for (const auto& name : model_zoo_names()) {
    const auto model = load_model(name);
    for (const int tp : {1, 2, 4, 8, 16}) {
      for (const int cp : {1, 2, 4, 8}) {
        for (const int pp : {1, 2}) {
          for (const int ep : {1, 2, 8}) {
            const ParallelConfig config = test::cp_config(tp, cp, ep, pp);
            if (!structural_errors(config).empty()) continue;
            for (const std::int64_t tokens : {1, 3, 16, 4096}) {
              for (const int batch : {1, 2}) {
                for (const auto split : {CpSplit::kRoundRobin, CpSplit::kZigzag}) {
                  for (const auto algo : {CpAlgorithm::kAllGather, CpAlgorithm::kRing, CpAlgorithm::kUlysses}) {
                    auto options = test::prefill(tokens, 2, split, algo);
                    options.batch = batch;
                    std::string thrown;
                    try {
                      check_schedule_options(model, config, options);
                    } catch (const Error& e) {
                      thrown = e.what();
                    }
                    const std::string returned = schedule_options_violation(model, config, options);
                    INFO(name << " tp " << tp << " cp " << cp << " pp " << pp << " ep " << ep << " tokens " << tokens
                              << " batch " << batch);
                    REQUIRE(returned == thrown);
                    ++checked;
                    violations += returned.empty() ? 0 : 1;
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  // The sweep reaches both outcomes in numbers: a check that always passed or always failed would not test much.
  CHECK(violations > 1000);
  CHECK(checked - violations > 1000);
}
