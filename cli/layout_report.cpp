#include "cli/layout_report.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "topology/parallel_config.hpp"

namespace paratwin::cli {
namespace {

// Families in the order the report lists them: SGLang's creation order, then the implicit DP replicas.
constexpr GroupFamily kReportOrder[] = {GroupFamily::kTp,    GroupFamily::kAttnCp, GroupFamily::kAttnTp,
                                        GroupFamily::kMoeDp, GroupFamily::kMoeEp,  GroupFamily::kMoeTp,
                                        GroupFamily::kPp,    GroupFamily::kAttnDp};

// Lists at most this many groups per family in text; JSON always lists all.
constexpr std::size_t kMaxGroupsShown = 16;
constexpr int kMaxRanksShown = 256;

std::string alias_text(const RankLayout& layout, GroupFamily family) {
  if (family == GroupFamily::kTp) return "-";
  if (family == GroupFamily::kAttnDp) return "implicit";
  if (family == GroupFamily::kMoeDp && layout.moe_dp_is_attn_cp()) return "= attn_cp";
  return layout.aliases_tp(family) ? "= tp" : "-";
}

std::string gbps(double bytes_per_s) {
  return fmt::format("{:.0f} GB/s", bytes_per_s / 1e9);
}

}  // namespace

std::string format_ranks(const std::vector<int>& ranks) {
  bool consecutive = ranks.size() > 2;
  for (std::size_t i = 1; i < ranks.size() && consecutive; ++i) consecutive = ranks[i] == ranks[i - 1] + 1;
  if (consecutive) return fmt::format("[{}..{}]", ranks.front(), ranks.back());
  std::string text = "[";
  for (std::size_t i = 0; i < ranks.size(); ++i) text += fmt::format("{}{}", i ? "," : "", ranks[i]);
  return text + "]";
}

std::string layout_text(const RankLayout& layout, const Placement& placement,
                        const std::vector<std::string>& warnings) {
  const auto& c = layout.config();
  std::string s;
  s += fmt::format("paratwin layout: {}\n", c.to_flags());
  s += fmt::format(
      "world {} = tp {} × pp {}; attention: attn_dp {} × attn_cp {} × attn_tp {}; "
      "MoE: moe_dp {} × ep {} × moe_tp {}\n",
      layout.world_size(), c.tp_size, c.pp_size, c.attn_dp_size(), c.attn_cp_size, c.attn_tp_size(), c.moe_dp_size,
      c.ep_size, c.moe_tp_size());
  const auto& cl = placement.cluster();
  s += fmt::format("cluster {}: {} node(s) × {} {} ({} GPUs used)\n\n", cl.name, cl.nodes, cl.gpus_per_node,
                   cl.gpu.name, placement.gpus_used());

  s += "Groups (SGLang creation order; '= tp' is the TP communicator itself)\n";
  s += fmt::format("  {:<8} {:<13} {:>5} {:>7}  {:<10} {:<8} {:>11}  {}\n", "family", "sglang name", "size", "groups",
                   "alias", "link", "bottleneck", "ranks");
  for (const auto family : kReportOrder) {
    const auto& groups = layout.groups(family);
    // The worst span over the family's groups.
    bool all_nvlink = true;
    double bottleneck = 0;
    for (std::size_t i = 0; i < groups.size(); ++i) {
      const auto span = placement.span(groups[i].ranks);
      all_nvlink &= span.single_nvlink_domain;
      bottleneck = i == 0 ? span.bottleneck_bytes_per_s : std::min(bottleneck, span.bottleneck_bytes_per_s);
    }
    std::vector<std::string> shown;
    for (std::size_t i = 0; i < groups.size() && i < kMaxGroupsShown; ++i)
      shown.push_back(format_ranks(groups[i].ranks));
    std::string ranks = fmt::format("{}", fmt::join(shown, " "));
    if (groups.size() > kMaxGroupsShown) ranks += fmt::format(" … ({} more)", groups.size() - kMaxGroupsShown);
    const auto name = sglang_group_name(family);
    const bool alone = layout.group_size(family) == 1;  // a singleton group crosses no link
    s += fmt::format("  {:<8} {:<13} {:>5} {:>7}  {:<10} {:<8} {:>11}  {}\n", family_key(family),
                     name.empty() ? "(replicas)" : name, layout.group_size(family), groups.size(),
                     alias_text(layout, family), alone ? "-" : (all_nvlink ? "nvlink" : "network"),
                     alone ? "-" : gbps(bottleneck), ranks);
  }

  s += "\nRanks\n";
  s += fmt::format("  {:>5} {:>5} {:>4}  {:>3} {:>3}  {:>7} {:>7} {:>7}  {:>6} {:>6} {:>6}\n", "rank", "node", "gpu",
                   "tp", "pp", "attn_dp", "attn_cp", "attn_tp", "moe_dp", "moe_ep", "moe_tp");
  for (int r = 0; r < layout.world_size() && r < kMaxRanksShown; ++r) {
    const auto& co = layout.coords(r);
    const auto& loc = placement.location(r);
    s += fmt::format("  {:>5} {:>5} {:>4}  {:>3} {:>3}  {:>7} {:>7} {:>7}  {:>6} {:>6} {:>6}\n", r, loc.node, loc.gpu,
                     co.tp_rank, co.pp_rank, co.attn_dp_rank, co.attn_cp_rank, co.attn_tp_rank, co.moe_dp_rank,
                     co.moe_ep_rank, co.moe_tp_rank);
  }
  if (layout.world_size() > kMaxRanksShown) {
    s += fmt::format("  … {} more ranks (use --json for all)\n", layout.world_size() - kMaxRanksShown);
  }

  s += "\nWarnings\n";
  if (warnings.empty()) s += "  none: SGLang accepts this configuration\n";
  for (const auto& w : warnings) s += "  - " + w + "\n";
  return s;
}

std::string layout_json(const RankLayout& layout, const Placement& placement,
                        const std::vector<std::string>& warnings) {
  using nlohmann::json;
  const auto& c = layout.config();
  json doc;
  doc["world_size"] = layout.world_size();
  json groups = json::object();
  json aliases = json::object();
  json spans = json::object();
  for (const auto family : kReportOrder) {
    json lists = json::array();
    json family_spans = json::array();
    for (const auto& g : layout.groups(family)) {
      lists.push_back(g.ranks);
      const auto span = placement.span(g.ranks);
      family_spans.push_back({{"nodes", span.nodes},
                              {"single_nvlink_domain", span.single_nvlink_domain},
                              {"bottleneck_bytes_per_s", span.bottleneck_bytes_per_s}});
    }
    const auto key = std::string(family_key(family));
    groups[key] = std::move(lists);
    spans[key] = std::move(family_spans);
    aliases[key] = alias_text(layout, family);
  }
  doc["groups"] = std::move(groups);
  json ranks = json::array();
  for (int r = 0; r < layout.world_size(); ++r) {
    const auto& co = layout.coords(r);
    const auto& loc = placement.location(r);
    ranks.push_back({{"rank", r},
                     {"node", loc.node},
                     {"gpu", loc.gpu},
                     {"tp_rank", co.tp_rank},
                     {"pp_rank", co.pp_rank},
                     {"attn_dp_rank", co.attn_dp_rank},
                     {"attn_cp_rank", co.attn_cp_rank},
                     {"attn_tp_rank", co.attn_tp_rank},
                     {"moe_dp_rank", co.moe_dp_rank},
                     {"moe_ep_rank", co.moe_ep_rank},
                     {"moe_tp_rank", co.moe_tp_rank}});
  }
  doc["ranks"] = std::move(ranks);
  doc["warnings"] = warnings;
  json config = {{"attn_dp_size", c.attn_dp_size()},
                 {"attn_tp_size", c.attn_tp_size()},
                 {"moe_tp_size", c.moe_tp_size()},
                 {"replicas", c.replicas()},
                 {"flags", c.to_flags()}};
  for_each_layout_argument(c, [&](const char* key, const auto& value) { config[key] = value; });
  doc["config"] = std::move(config);
  doc["aliases"] = std::move(aliases);
  json order = json::array();
  for (const auto family : kAllFamilies) {
    if (!sglang_group_name(family).empty()) order.push_back(std::string(sglang_group_name(family)));
  }
  doc["creation_order"] = std::move(order);
  doc["spans"] = std::move(spans);
  const auto& cl = placement.cluster();
  doc["cluster"] = {{"name", cl.name},
                    {"nodes", cl.nodes},
                    {"gpus_per_node", cl.gpus_per_node},
                    {"gpus_used", placement.gpus_used()}};
  return doc.dump(2) + "\n";
}

}  // namespace paratwin::cli
