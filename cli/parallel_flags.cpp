#include "cli/parallel_flags.hpp"

#include <CLI/CLI.hpp>

#include "topology/error.hpp"

namespace paratwin::cli {

void add_parallel_flags(CLI::App& app, ParallelFlags& flags) {
  auto& c = flags.config;
  app.add_option("--tp-size,--tp,--tensor-parallel-size", c.tp_size,
                 "Ranks per pipeline stage (SGLang's tp_size: attention and MoE each factor it)")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_option("--pp-size,--pipeline-parallel-size", c.pp_size, "Pipeline stages; world = tp × pp")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_option("--dp-size,--dp,--data-parallel-size", c.dp_size,
                 "Data parallelism: attention DP degree with --enable-dp-attention, else independent replicas")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_flag("--enable-dp-attention", c.enable_dp_attention,
               "Split the attention side of each stage into dp replicas (attn_dp = dp)")
      ->group("SGLang parallelism");
  app.add_option("--attn-cp-size,--attention-context-parallel-size", c.attn_cp_size,
                 "Attention context-parallel degree (ATTN_CP groups, strided by attn_tp)")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_option("--ep-size,--ep,--expert-parallel-size", c.ep_size, "MoE expert-parallel degree (MOE_EP groups)")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_option("--moe-dp-size,--moe-data-parallel-size", c.moe_dp_size,
                 "MoE data-parallel degree (MOE_DP groups; 'MOE_CP' in PR #17213's description)")
      ->capture_default_str()
      ->group("SGLang parallelism");
  app.add_option("--world-size", flags.world_size, "Total ranks of one world, checked against tp × pp (0: not given)")
      ->group("SGLang parallelism");
  app.add_option("--moe-dp-rule", flags.moe_dp_rule,
                 "merged: MOE_DP as built at the PR #17213 merge; attn-cp-alias: newest upstream, MOE_DP is the "
                 "ATTN_CP group when attn_cp > moe_dp")
      ->capture_default_str()
      ->check(CLI::IsMember({"merged", "attn-cp-alias"}))
      ->group("SGLang parallelism");
  app.add_option("--sglang-version", flags.sglang_version,
                 "SGLang version whose ServerArgs rules --strict-sglang enforces: 17213 (merge), 19548, 22003")
      ->capture_default_str()
      ->group("SGLang rules");
  app.add_flag("--strict-sglang", flags.strict_sglang, "Make SGLang's own support rules errors instead of warnings")
      ->group("SGLang rules");
}

CheckedConfig check_parallel_flags(const ParallelFlags& flags) {
  CheckedConfig checked;
  checked.config = flags.config;
  if (flags.world_size != 0) checked.config.world_size = flags.world_size;
  checked.config.moe_dp_rule =
      flags.moe_dp_rule == "attn-cp-alias" ? MoeDpRule::kAliasAttnCpWhenLarger : MoeDpRule::kMerged;
  validate_structure(checked.config);
  const auto version = parse_sglang_version(flags.sglang_version);
  for (const auto& violation : check_sglang_rules(checked.config)) {
    if (flags.strict_sglang && rejects(violation, version)) {
      fail("SGLang {} rejects this configuration (--strict-sglang): {}", describe(version), violation.message);
    }
    checked.warnings.push_back(violation.message);
  }
  if (checked.config.replicas() > 1) {
    checked.warnings.push_back(
        fmt::format("--dp-size {} without --enable-dp-attention launches {} independent replicas of this {}-rank world "
                    "({} GPUs in all); the groups below are those of one replica",
                    checked.config.dp_size, checked.config.replicas(), checked.config.world(),
                    checked.config.replicas() * checked.config.world()));
  }
  return checked;
}

}  // namespace paratwin::cli
