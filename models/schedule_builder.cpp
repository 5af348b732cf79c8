#include "models/schedule_builder.hpp"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <string>

#include "models/builders/layer_context.hpp"
#include "models/builders/moe_routing.hpp"
#include "models/builders/pipeline_stage.hpp"
#include "models/builders/rank_tokens.hpp"
#include "models/memory_model.hpp"
#include "topology/error.hpp"

namespace paratwin {
namespace {

using build::OpRef;

constexpr std::int64_t kMaxPromptTokens = std::int64_t{1} << 26;  // 64M tokens

int resolved_layers(const ModelSpec& model, const ScheduleOptions& options) {
  return options.layers > 0 ? options.layers : model.num_layers;
}

int resolved_micro_batches(const ParallelConfig& config, const ScheduleOptions& options) {
  if (options.phase == Phase::kDecode) return 1;
  return options.micro_batches > 0 ? options.micro_batches : config.pp_size;
}

// The first rule the options break, as the sentence the user reads; "" when they fit. A string, not an exception: the
// planner asks this of millions of rejected layouts, where throwing cost most of its time (docs/performance.md).
std::string options_violation(const ModelSpec& model, const ParallelConfig& c, const ScheduleOptions& o,
                              MoeMode moe_mode) {
  const int cp = c.attn_cp_size;
  const int attn_tp = c.attn_tp_size();
  if (o.prompt_tokens < 1 || o.prompt_tokens > kMaxPromptTokens) {
    return fmt::format("--prompt-len {} is invalid: it must be between 1 and {} tokens", o.prompt_tokens, kMaxPromptTokens);
  }
  if (o.batch < 1) return fmt::format("--batch {} is invalid: at least one request", o.batch);
  if (o.batch % c.attn_dp_size() != 0) {
    return fmt::format("--batch {} is not divisible by --dp-size {}: each attention-DP replica takes an equal share of the requests",
         o.batch, c.dp_size);
  }
  if (o.layers < 0 || o.layers > model.num_layers) {
    return fmt::format("--layers {} is invalid for {}: between 1 and its {} layers (0 means all)", o.layers, model.name,
         model.num_layers);
  }
  const int layers = resolved_layers(model, o);
  if (layers < c.pp_size) {
    return fmt::format("{} layers cannot fill --pp-size {} stages: each stage needs at least one layer", layers, c.pp_size);
  }
  if (model.num_attention_heads % attn_tp != 0) {
    return fmt::format("{} has {} attention heads, not divisible by attention TP {} (--tp-size {} / (attn_dp × attn_cp))", model.name,
         model.num_attention_heads, attn_tp, c.tp_size);
  }
  const int micro = resolved_micro_batches(c, o);
  if (o.micro_batches < 0) return fmt::format("--micro-batches {} is invalid: at least 1", o.micro_batches);
  if (o.phase == Phase::kDecode) {
    if (cp > 1) {
      return fmt::format(
          "--phase decode with --attn-cp-size {}: SGLang's context parallelism is prefill-only (decode runs the same "
          "batch on every CP rank); model decode with --attn-cp-size 1",
          cp);
    }
  } else {
    const std::int64_t chunk = o.prompt_tokens / micro;
    if (chunk < 1) return fmt::format("--prompt-len {} is shorter than --micro-batches {}", o.prompt_tokens, micro);
    if (cp > 1 && o.cp_split == CpSplit::kZigzag) {
      if (o.batch / c.attn_dp_size() != 1) {
        return fmt::format(
            "zigzag (in-seq-split) CP takes one request per attention-DP replica, but --batch {} gives {} "
            "(SGLang's in-seq-split supports batch size 1 only)",
            o.batch, o.batch / c.attn_dp_size());
      }
      if (chunk < 2 * cp) {
        return fmt::format(
            "zigzag CP needs at least 2 × --attn-cp-size = {} tokens per micro-batch, but --prompt-len {} over {} "
            "micro-batch(es) gives {}",
            2 * cp, o.prompt_tokens, micro, chunk);
      }
    }
    if (cp > 1 && o.cp_split == CpSplit::kRoundRobin) {
      if (chunk < cp) {
        return fmt::format("round-robin CP needs at least --attn-cp-size = {} tokens per micro-batch, got {}", cp, chunk);
      }
      if (o.batch / c.attn_dp_size() > 1 && (o.prompt_tokens % (static_cast<std::int64_t>(cp) * micro)) != 0) {
        return fmt::format(
            "round-robin CP with several requests needs --prompt-len divisible by --attn-cp-size × micro-batches = "
            "{} so every request splits the same way, got {}",
            cp * micro, o.prompt_tokens);
      }
    }
    if (cp > 1 && o.cp_algorithm != CpAlgorithm::kAllGather && model.indexer) {
      return fmt::format(
          "--cp-algo {} cannot run {}'s DSA sparse attention: its indexer scores every key, so only allgather CP "
          "(SGLang's) applies",
          to_string(o.cp_algorithm), model.name);
    }
    if (cp > 1 && o.cp_algorithm == CpAlgorithm::kRing && micro > 1) {
      return fmt::format(
          "--cp-algo ring with {} micro-batches: ring CP keeps KV sharded, so earlier chunks' keys are not local; "
          "use --micro-batches 1",
          micro);
    }
    if (cp > 1 && o.cp_algorithm == CpAlgorithm::kUlysses) {
      const auto heads = model.num_attention_heads / attn_tp;
      if (heads % cp != 0) {
        return fmt::format("--cp-algo ulysses needs the {} attention heads per attention-TP rank divisible by --attn-cp-size {}",
             heads, cp);
      }
    }
  }
  if (model.moe) {
    if (moe_mode == MoeMode::kAllToAll && c.ep_size == 1) {
      return fmt::format("--moe-mode a2a needs --ep-size > 1: the all-to-all dispatches tokens to the ranks owning their experts");
    }
    if (moe_mode == MoeMode::kGather && (c.ep_size != 1 || c.moe_dp_size != 1)) {
      return fmt::format(
          "--moe-mode gather needs --ep-size 1 and --moe-dp-size 1 (fused MoE with TP-sharded experts), got "
          "--ep-size {} --moe-dp-size {}",
          c.ep_size, c.moe_dp_size);
    }
    if (model.moe->num_experts % c.ep_size != 0) {
      return fmt::format("{} has {} experts, not divisible by --ep-size {}", model.name, model.moe->num_experts, c.ep_size);
    }
    if (model.moe->expert_intermediate_size % c.moe_tp_size() != 0) {
      return fmt::format("{}'s expert width {} is not divisible by MoE TP {} (--tp-size / (--ep-size × --moe-dp-size))", model.name,
           model.moe->expert_intermediate_size, c.moe_tp_size());
    }
  }
  if (model.intermediate_size % attn_tp != 0) {
    return fmt::format("{}'s dense FFN width {} is not divisible by attention TP {}", model.name, model.intermediate_size, attn_tp);
  }
  // Bound the work before allocating: ~40 ops per layer per rank per micro-batch (ring CP adds ~4 per CP rank).
  const std::int64_t per_layer = 40 + (o.cp_algorithm == CpAlgorithm::kRing ? 6 * cp : 0);
  const std::int64_t estimate = static_cast<std::int64_t>(c.world()) * layers / c.pp_size * micro * per_layer;
  if (estimate > kMaxScheduleOps) {
    return fmt::format(
        "this schedule would hold about {} ops ({} ranks × {} layers per stage × {} micro-batches), over paratwin's "
        "limit of {}: cut the model with --layers or use fewer ranks",
        estimate, c.world(), layers / c.pp_size, micro, kMaxScheduleOps);
  }
  return {};
}

void validate_options(const ModelSpec& model, const ParallelConfig& c, const ScheduleOptions& o, MoeMode moe_mode) {
  if (auto why = options_violation(model, c, o, moe_mode); !why.empty()) throw Error(why);
}

// Routing objects shared by ranks whose EP groups route the same token counts.
class RoutingCache {
 public:
  RoutingCache(const ModelSpec& model, const RoutingOptions& options) : model_(model), options_(options) {}
  const build::ExpertRouting& get(std::vector<std::int64_t> tokens_per_member) {
    auto& slot = cache_[tokens_per_member];
    if (!slot) {
      slot = std::make_unique<build::ExpertRouting>(model_.moe->num_experts, model_.moe->experts_per_token, options_,
                                                    std::move(tokens_per_member));
    }
    return *slot;
  }
  const build::ExpertRouting& get(std::vector<std::vector<build::TokenKey>> member_tokens) {
    auto& slot = per_token_cache_[member_tokens];
    if (!slot) {
      slot = std::make_unique<build::ExpertRouting>(model_.moe->num_experts, model_.moe->experts_per_token,
                                                    options_.seed, std::move(member_tokens));
    }
    return *slot;
  }

 private:
  const ModelSpec& model_;
  RoutingOptions options_;
  std::map<std::vector<std::int64_t>, std::unique_ptr<build::ExpertRouting>> cache_;
  std::map<std::vector<std::vector<build::TokenKey>>, std::unique_ptr<build::ExpertRouting>> per_token_cache_;
};

// Per-token routing: the (request, position) of every token a rank holds, padded with (−1, row in the gathered
// tensor) up to `padded` rows at gathered row offset `first_row`.
std::vector<build::TokenKey> token_keys(const build::RankTokens& t, std::int64_t padded, std::int64_t first_row) {
  std::vector<build::TokenKey> keys;
  for (const auto& run : t.runs) {
    for (std::int64_t r = 0; r < t.requests; ++r) {
      for (std::int64_t i = 0; i < run.count; ++i) keys.push_back({r, run.start + i * run.stride});
    }
  }
  for (auto row = static_cast<std::int64_t>(keys.size()); row < padded; ++row) keys.push_back({-1, first_row + row});
  return keys;
}

}  // namespace

void check_schedule_options(const ModelSpec& model, const ParallelConfig& config, const ScheduleOptions& options) {
  validate_structure(config);
  validate_options(model, config, options, resolve_moe_mode(config, options));
}

std::string schedule_options_violation(const ModelSpec& model, const ParallelConfig& config,
                                       const ScheduleOptions& options) {
  return options_violation(model, config, options, resolve_moe_mode(config, options));
}

MoeMode resolve_moe_mode(const ParallelConfig& config, const ScheduleOptions& options) {
  if (options.moe_mode) return *options.moe_mode;
  return config.ep_size > 1 ? MoeMode::kAllToAll : MoeMode::kGather;
}

Schedule build_schedule(const ModelSpec& model, const ParallelConfig& config, const ScheduleOptions& options) {
  const auto moe_mode = resolve_moe_mode(config, options);
  validate_options(model, config, options, moe_mode);
  const RankLayout layout(config);
  const int layers = resolved_layers(model, options);
  const int micro = resolved_micro_batches(config, options);
  const auto stages = pp_layer_ranges(layers, config.pp_size);
  const auto chunks = build::micro_batch_chunks(options, micro);

  Schedule schedule;
  auto& meta = schedule.meta;
  meta.model = model.name;
  meta.config = config;
  meta.phase = options.phase;
  meta.prompt_tokens = options.prompt_tokens;
  meta.batch = options.batch;
  meta.cp_algorithm = options.cp_algorithm;
  meta.cp_split = options.cp_split;
  meta.moe_mode = moe_mode;
  meta.layers = layers;
  meta.micro_batches = micro;
  meta.weight_dtype = model.weight_dtype;
  const bool per_token = model.moe && options.routing.load == RoutingLoad::kPerToken;
  if (per_token) {
    if (config.attn_dp_size() > 1 || config.attn_tp_size() > 1) {
      fail(
          "per-token expert routing needs every rank's tokens to be whole requests' CP shards (attention DP and "
          "attention TP of 1), got attn_dp {} and attn_tp {}",
          config.attn_dp_size(), config.attn_tp_size());
    }
    meta.per_token_routing_seed = options.routing.seed;
  }
  schedule.ranks.resize(static_cast<std::size_t>(layout.world_size()));

  build::CollectiveNumbering numbering;
  RoutingCache routing(model, options.routing);
  for (int rank = 0; rank < layout.world_size(); ++rank) {
    const auto& coords = layout.coords(rank);
    const auto& stage = stages[static_cast<std::size_t>(coords.pp_rank)];
    const bool first_stage = coords.pp_rank == 0;
    const bool last_stage = coords.pp_rank == config.pp_size - 1;
    build::RankEmitter e(rank, layout, numbering, schedule.ranks[static_cast<std::size_t>(rank)]);
    for (int mb = 0; mb < micro; ++mb) {
      const auto& chunk = chunks[static_cast<std::size_t>(mb)];
      build::LayerContext ctx{model,    layout, options,
                              moe_mode, coords, build::rank_tokens(config, options, coords, chunk)};
      if (per_token) {
        std::vector<std::vector<build::TokenKey>> member_tokens;
        if (moe_mode == MoeMode::kAllToAll) {
          for (const int member : layout.group_of(GroupFamily::kMoeEp, rank).ranks) {
            member_tokens.push_back(
                token_keys(build::rank_tokens(config, options, layout.coords(member), chunk), 0, 0));
          }
        } else {
          // One member holding the gathered rows: each ATTN_CP shard padded to the largest (moe_layer.cpp).
          const auto padded = ctx.tokens.max_local * ctx.tokens.requests;
          std::vector<build::TokenKey> gathered;
          std::int64_t first_row = 0;
          for (const int member : layout.group_of(GroupFamily::kAttnCp, rank).ranks) {
            const auto keys =
                token_keys(build::rank_tokens(config, options, layout.coords(member), chunk), padded, first_row);
            gathered.insert(gathered.end(), keys.begin(), keys.end());
            first_row += padded;
          }
          member_tokens.push_back(std::move(gathered));
        }
        ctx.routing = &routing.get(std::move(member_tokens));
      } else if (model.moe) {
        std::vector<std::int64_t> member_tokens;
        if (moe_mode == MoeMode::kAllToAll) {
          for (const int member : layout.group_of(GroupFamily::kMoeEp, rank).ranks) {
            const auto t = build::rank_tokens(config, options, layout.coords(member), chunk);
            member_tokens.push_back(build::moe_tokens(config, t));
          }
        } else {
          member_tokens.push_back(build::moe_tokens(config, ctx.tokens));
        }
        ctx.routing = &routing.get(std::move(member_tokens));
      }
      e.set_position(-1, mb, options.phase);
      build::ResidualStream hidden;
      hidden.residual = first_stage ? build::embed_tokens(ctx, e) : build::receive_from_previous_stage(ctx, e);
      for (int layer = stage.first; layer < stage.end; ++layer) {
        e.set_position(layer, mb, options.phase);
        switch (config.attn_cp_size > 1 && options.phase == Phase::kPrefill ? options.cp_algorithm
                                                                            : CpAlgorithm::kAllGather) {
          case CpAlgorithm::kAllGather:
            hidden = build::attention_cp_allgather(ctx, e, hidden);
            break;
          case CpAlgorithm::kRing:
            hidden = build::attention_cp_ring(ctx, e, hidden);
            break;
          case CpAlgorithm::kUlysses:
            hidden = build::attention_cp_ulysses(ctx, e, hidden);
            break;
        }
        hidden = model.is_moe_layer(layer) ? build::moe_mlp(ctx, e, hidden) : build::dense_mlp(ctx, e, hidden);
      }
      // The stage's last add has no norm of the same rows after it (the head norms each request's last token
      // only, after the CP gather; a send moves the stream to the next stage): it runs alone, in its layer.
      const OpRef whole = build::close_stream(ctx, e, hidden);
      e.set_position(-1, mb, options.phase);
      if (last_stage) {
        build::final_logits(ctx, e, whole);
      } else {
        build::send_to_next_stage(ctx, e, whole);
      }
    }
  }
  return schedule;
}

}  // namespace paratwin
