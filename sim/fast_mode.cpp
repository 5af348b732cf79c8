#include "sim/fast_mode.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "topology/error.hpp"

namespace paratwin::sim {
namespace {

// Where each layer's ops sit on each rank: [begin, end) in the rank's list; -1 when absent.
struct Span {
  int begin = -1;
  int end = -1;
};

// Two layers are identical when every rank has the same ops (names aside) with the same relative deps, and the
// collectives/p2p of one map one-to-one onto those of the other.
bool same_layer(const Schedule& s, const std::vector<std::vector<Span>>& spans, int la, int lb) {
  std::unordered_map<std::int64_t, std::int64_t> instance_map, match_map;
  for (std::size_t r = 0; r < s.ranks.size(); ++r) {
    const Span a = spans[r][static_cast<std::size_t>(la)];
    const Span b = spans[r][static_cast<std::size_t>(lb)];
    if ((a.begin < 0) != (b.begin < 0)) return false;
    if (a.begin < 0) continue;
    if (a.end - a.begin != b.end - b.begin) return false;
    const auto& ops = s.ranks[r];
    for (int i = 0; i < a.end - a.begin; ++i) {
      const Op& x = ops[static_cast<std::size_t>(a.begin + i)];
      const Op& y = ops[static_cast<std::size_t>(b.begin + i)];
      if (x.stream != y.stream || x.phase != y.phase || x.micro_batch != y.micro_batch) return false;
      if (x.deps.size() != y.deps.size()) return false;
      for (std::size_t d = 0; d < x.deps.size(); ++d) {
        if (x.index - x.deps[d] != y.index - y.deps[d]) return false;
      }
      if (x.body.index() != y.body.index()) return false;
      if (const auto* cx = std::get_if<ComputeOp>(&x.body)) {
        if (!(*cx == std::get<ComputeOp>(y.body))) return false;
      } else if (const auto* kx = std::get_if<CollectiveOp>(&x.body)) {
        CollectiveOp ky = std::get<CollectiveOp>(y.body);
        const auto [it, fresh] = instance_map.try_emplace(kx->instance, ky.instance);
        if (it->second != ky.instance) return false;
        ky.instance = kx->instance;
        if (!(*kx == ky)) return false;
      } else {
        const P2POp& px = std::get<P2POp>(x.body);
        P2POp py = std::get<P2POp>(y.body);
        const auto [it, fresh] = match_map.try_emplace(px.match, py.match);
        if (it->second != py.match) return false;
        py.match = px.match;
        if (!(px == py)) return false;
      }
    }
  }
  return true;
}

}  // namespace

ReducedSchedule reduce_layers(const Schedule& schedule) {
  ReducedSchedule out;
  out.schedule = schedule;
  const auto ranks = schedule.ranks.size();
  out.original.resize(ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    out.original[r].resize(schedule.ranks[r].size());
    for (std::size_t i = 0; i < schedule.ranks[r].size(); ++i) out.original[r][i] = static_cast<int>(i);
  }
  if (schedule.meta.micro_batches > 1) return out;
  int max_layer = -1;
  for (const auto& ops : schedule.ranks) {
    for (const Op& op : ops) max_layer = std::max(max_layer, op.layer);
  }
  if (max_layer < 2) return out;
  const auto layers = static_cast<std::size_t>(max_layer + 1);
  std::vector<std::vector<Span>> spans(ranks, std::vector<Span>(layers));
  for (std::size_t r = 0; r < ranks; ++r) {
    const auto& ops = schedule.ranks[r];
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].layer < 0) continue;
      Span& span = spans[r][static_cast<std::size_t>(ops[i].layer)];
      if (span.begin < 0) {
        span.begin = static_cast<int>(i);
      } else if (span.end != static_cast<int>(i)) {
        return out;  // a layer that is not contiguous on this rank
      }
      span.end = static_cast<int>(i) + 1;
    }
  }
  // Maximal runs of identical consecutive layers.
  int first = 0;
  for (int l = 1; l <= max_layer + 1; ++l) {
    const bool extends = l <= max_layer && same_layer(schedule, spans, l - 1, l);
    if (extends) continue;
    if (l - 1 - first >= 2) {
      LayerRun run;
      run.first = first;
      run.last = l - 1;
      for (std::size_t r = 0; r < ranks; ++r) {
        const Span s0 = spans[r][static_cast<std::size_t>(first)];
        if (s0.begin < 0) continue;
        run.ranks.push_back(static_cast<int>(r));
        run.layer_length.push_back(s0.end - s0.begin);
        run.second_begin.push_back(spans[r][static_cast<std::size_t>(first + 1)].begin);
      }
      if (!run.ranks.empty()) out.runs.push_back(std::move(run));
    }
    first = l;
  }
  if (out.runs.empty()) return out;

  out.layer_weight.assign(layers + 1, 1.0);
  std::vector<char> dropped_layer(layers, 0);
  for (const LayerRun& run : out.runs) {
    out.layer_weight[static_cast<std::size_t>(run.first + 2)] = run.last - run.first;  // layer first+1, slot +1
    for (int l = run.first + 2; l <= run.last; ++l) dropped_layer[static_cast<std::size_t>(l)] = 1;
    out.layers_reused += run.last - run.first - 1;
  }
  for (std::size_t r = 0; r < ranks; ++r) {
    const auto& ops = schedule.ranks[r];
    std::vector<int> new_index(ops.size(), -1);
    std::vector<Op> kept;
    std::vector<int> original;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].layer >= 0 && dropped_layer[static_cast<std::size_t>(ops[i].layer)] != 0) continue;
      new_index[i] = static_cast<int>(kept.size());
      original.push_back(static_cast<int>(i));
      kept.push_back(ops[i]);
    }
    for (Op& op : kept) {
      op.index = new_index[static_cast<std::size_t>(original[static_cast<std::size_t>(&op - kept.data())])];
      for (int& dep : op.deps) {
        int target = dep;
        const Op& dep_op = ops[static_cast<std::size_t>(dep)];
        if (dep_op.layer >= 0 && dropped_layer[static_cast<std::size_t>(dep_op.layer)] != 0) {
          // A dependency on a dropped copy: the same op of the kept second copy.
          for (const LayerRun& run : out.runs) {
            if (dep_op.layer < run.first + 2 || dep_op.layer > run.last) continue;
            const auto it = std::find(run.ranks.begin(), run.ranks.end(), static_cast<int>(r));
            const auto k = static_cast<std::size_t>(it - run.ranks.begin());
            target = dep - (dep_op.layer - run.first - 1) * run.layer_length[k];
          }
        }
        dep = new_index[static_cast<std::size_t>(target)];
        PARATWIN_ASSERT(dep >= 0 && dep < op.index, "fast mode remapped a dependency badly");
      }
    }
    out.schedule.ranks[r] = std::move(kept);
    out.original[r] = std::move(original);
  }
  return out;
}

std::vector<Event> expand_layers(const Schedule& original, const ReducedSchedule& reduced,
                                 const std::vector<Event>& events) {
  if (reduced.runs.empty()) return events;
  const auto ranks = original.ranks.size();
  // Per run: period, cut time and the reduced events' shifts.
  struct RunTiming {
    double period = 0;
    double cut = 0;
    int copies = 0;
  };
  std::vector<RunTiming> timing;
  std::vector<std::vector<char>> in_run(reduced.runs.size(), std::vector<char>(ranks, 0));
  for (std::size_t k = 0; k < reduced.runs.size(); ++k) {
    const LayerRun& run = reduced.runs[k];
    RunTiming t;
    t.copies = run.last - run.first - 1;
    std::vector<double> end_first(ranks, 0), end_second(ranks, 0);
    for (const Event& e : events) {
      const auto r = static_cast<std::size_t>(e.rank);
      if (e.layer == run.first) end_first[r] = std::max(end_first[r], e.end_s);
      if (e.layer == run.first + 1) end_second[r] = std::max(end_second[r], e.end_s);
    }
    for (const int r : run.ranks) {
      in_run[k][static_cast<std::size_t>(r)] = 1;
      t.period = std::max(t.period, end_second[static_cast<std::size_t>(r)] - end_first[static_cast<std::size_t>(r)]);
      t.cut = std::max(t.cut, end_second[static_cast<std::size_t>(r)]);
    }
    timing.push_back(t);
  }
  std::vector<Event> out;
  out.reserve(events.size());
  for (const Event& e : events) {
    const auto r = static_cast<std::size_t>(e.rank);
    Event base = e;
    base.op = reduced.original[r][static_cast<std::size_t>(e.op)];
    double shift = 0;
    for (std::size_t k = 0; k < reduced.runs.size(); ++k) {
      const LayerRun& run = reduced.runs[k];
      if (in_run[k][r] != 0) {
        const auto slot =
            static_cast<std::size_t>(std::find(run.ranks.begin(), run.ranks.end(), e.rank) - run.ranks.begin());
        const int second_end = run.second_begin[slot] + run.layer_length[slot];
        if (base.op >= second_end) shift += timing[k].copies * timing[k].period;
      } else if (e.start_s >= timing[k].cut) {
        shift += timing[k].copies * timing[k].period;
      }
    }
    base.start_s += shift;
    base.end_s += shift;
    out.push_back(base);
    for (std::size_t k = 0; k < reduced.runs.size(); ++k) {
      const LayerRun& run = reduced.runs[k];
      if (e.layer != run.first + 1 || in_run[k][r] == 0) continue;
      const auto slot =
          static_cast<std::size_t>(std::find(run.ranks.begin(), run.ranks.end(), e.rank) - run.ranks.begin());
      for (int j = 1; j <= timing[k].copies; ++j) {
        Event copy = base;
        copy.op = base.op + j * run.layer_length[slot];
        const Op& op = original.ranks[r][static_cast<std::size_t>(copy.op)];
        copy.name = op.name;
        copy.layer = op.layer;
        copy.start_s += j * timing[k].period;
        copy.end_s += j * timing[k].period;
        out.push_back(std::move(copy));
      }
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Event& a, const Event& b) { return a.rank != b.rank ? a.rank < b.rank : a.op < b.op; });
  return out;
}

}  // namespace paratwin::sim
