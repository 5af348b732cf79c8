// The summary of a simulation: end-to-end time, per-layer and per-kind breakdowns, exposed communication,
// compute utilization and the busiest links, all computed from the events.

#include "sim/summary.hpp"

#include <algorithm>
#include <map>

namespace paratwin::sim {
namespace {

struct Interval {
  double start = 0;
  double end = 0;
};

// Length of [a.start, a.end) not covered by the union of `cover` (sorted by start, non-overlapping: one stream).
double uncovered(const Interval& a, const std::vector<Interval>& cover) {
  double covered = 0;
  auto it =
      std::lower_bound(cover.begin(), cover.end(), a.start, [](const Interval& c, double t) { return c.end <= t; });
  for (; it != cover.end() && it->start < a.end; ++it) {
    covered += std::max(0.0, std::min(a.end, it->end) - std::max(a.start, it->start));
  }
  return std::max(0.0, (a.end - a.start) - covered);
}

}  // namespace

SimSummary summarize(const Schedule& schedule, const Placement& placement, const std::vector<Event>& events,
                     const EngineResult& engine) {
  SimSummary s;
  s.phase = schedule.meta.phase;
  const int ranks = static_cast<int>(schedule.ranks.size());
  std::vector<double> last_end(static_cast<std::size_t>(ranks), 0.0);
  for (const Event& e : events) {
    auto& end = last_end[static_cast<std::size_t>(e.rank)];
    end = std::max(end, e.end_s);
  }
  for (int r = 0; r < ranks; ++r) {
    if (last_end[static_cast<std::size_t>(r)] > s.end_to_end_s) {
      s.end_to_end_s = last_end[static_cast<std::size_t>(r)];
      s.critical_rank = r;
    }
  }

  // Per-rank compute intervals (one stream: already ordered and disjoint) and exposed communication.
  std::vector<std::vector<Interval>> compute(static_cast<std::size_t>(ranks));
  for (const Event& e : events) {
    if (e.stream == "compute") compute[static_cast<std::size_t>(e.rank)].push_back({e.start_s, e.end_s});
  }
  for (auto& c : compute) {
    std::sort(c.begin(), c.end(), [](const Interval& a, const Interval& b) { return a.start < b.start; });
  }
  s.exposed_comm_s.assign(static_cast<std::size_t>(ranks), 0.0);
  std::map<int, LayerBreakdown> layers;
  std::map<std::pair<std::string, std::string>, KindBreakdown> kinds;
  for (const Event& e : events) {
    const auto r = static_cast<std::size_t>(e.rank);
    const double duration = e.end_s - e.start_s;
    double exposed = 0;
    if (e.stream == "comm") {
      exposed = uncovered({e.start_s, e.end_s}, compute[r]);
      s.exposed_comm_s[r] += exposed;
    }
    KindBreakdown& k = kinds[{e.stream, e.kind}];
    k.kind = e.kind;
    k.stream = e.stream;
    ++k.count;
    k.mean_rank_s += duration / ranks;
    if (e.rank == s.critical_rank) k.critical_rank_s += duration;
    if (e.layer < 0) continue;
    auto [it, fresh] = layers.try_emplace(e.layer);
    LayerBreakdown& l = it->second;
    if (fresh) {
      l.layer = e.layer;
      l.start_s = e.start_s;
      l.end_s = e.end_s;
    }
    l.start_s = std::min(l.start_s, e.start_s);
    l.end_s = std::max(l.end_s, e.end_s);
    if (e.rank == s.critical_rank) {
      (e.stream == "compute" ? l.compute_s : l.comm_s) += duration;
      l.exposed_comm_s += exposed;
    }
  }
  if (ranks > 0) s.critical_exposed_comm_s = s.exposed_comm_s[static_cast<std::size_t>(s.critical_rank)];
  for (auto& [layer, l] : layers) s.layers.push_back(l);
  for (auto& [key, k] : kinds) s.kinds.push_back(k);

  // Compute utilization against the dtype's tensor peak.
  const GpuSpec& gpu = placement.cluster().gpu;
  double peak_seconds = 0;
  for (const auto& ops : schedule.ranks) {
    for (const Op& op : ops) {
      if (const auto* c = std::get_if<ComputeOp>(&op.body)) {
        peak_seconds += c->flops / (c->dtype == DType::kFp8 ? gpu.fp8_flops : gpu.bf16_flops);
      }
    }
  }
  if (s.end_to_end_s > 0 && ranks > 0) s.compute_utilization = peak_seconds / (ranks * s.end_to_end_s);

  std::vector<LinkUsage> links;
  for (const LinkLoad& link : engine.links) {
    if (link.bytes <= 0) continue;
    const double util = s.end_to_end_s > 0 ? link.bytes / (link.bandwidth_bytes_per_s * s.end_to_end_s) : 0;
    links.push_back(LinkUsage{link.name, link.link_class, link.bytes, util});
  }
  std::stable_sort(links.begin(), links.end(), [](const LinkUsage& a, const LinkUsage& b) {
    return a.utilization != b.utilization ? a.utilization > b.utilization : a.name < b.name;
  });
  if (links.size() > 5) links.resize(5);
  s.busiest_links = std::move(links);
  s.algorithms = engine.algorithm_counts;
  s.simgrid_tasks = engine.simgrid_tasks;
  s.reused_instances = engine.reused_instances;
  return s;
}

}  // namespace paratwin::sim
