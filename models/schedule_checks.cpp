#include "models/schedule_checks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <numeric>
#include <tuple>

#include "topology/error.hpp"
#include "topology/rank_layout.hpp"

namespace paratwin {
namespace {

constexpr std::size_t kMaxReports = 30;

class ScheduleChecker {
 public:
  explicit ScheduleChecker(const Schedule& s) : s_(s) {}

  std::vector<std::string> run() {
    const auto world = s_.meta.config.world();
    if (static_cast<int>(s_.ranks.size()) != world) {
      report("the schedule has {} ranks but its layout {} has a world of {}", s_.ranks.size(),
             s_.meta.config.to_flags(), world);
      return out_;
    }
    const RankLayout layout(s_.meta.config);
    check_ops();
    check_collectives(layout);
    check_p2p();
    if (out_.empty()) check_progress();
    return out_;
  }

 private:
  template <typename... Args>
  void report(fmt::format_string<Args...> format, Args&&... args) {
    if (out_.size() < kMaxReports) out_.push_back(fmt::format(format, std::forward<Args>(args)...));
  }

  [[nodiscard]] std::string where(std::size_t rank, const Op& op) const {
    return fmt::format("rank {} op {} ({})", rank, op.index, op.name);
  }

  void check_ops() {
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      const auto& ops = s_.ranks[r];
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto& op = ops[i];
        if (op.index != static_cast<int>(i)) report("{} sits at position {}", where(r, op), i);
        for (const int d : op.deps) {
          if (d < 0 || d >= op.index) report("{} depends on op {}, which is not an earlier op", where(r, op), d);
        }
        const bool compute = std::holds_alternative<ComputeOp>(op.body);
        if ((op.stream == Stream::kCompute) != compute) {
          report("{} is a {} op on the {} stream", where(r, op), compute ? "compute" : "communication",
                 to_string(op.stream));
        }
      }
    }
  }

  void check_collectives(const RankLayout& layout) {
    // instance -> (rank, op index) of every issue.
    std::map<std::int64_t, std::vector<std::pair<int, int>>> issues;
    // (family, group, rank) -> instances in issue order.
    std::map<std::tuple<int, int, int>, std::vector<std::int64_t>> order;
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      for (const auto& op : s_.ranks[r]) {
        const auto* c = std::get_if<CollectiveOp>(&op.body);
        if (c == nullptr) continue;
        issues[c->instance].emplace_back(static_cast<int>(r), op.index);
        order[{family_index(c->family), c->group_index, static_cast<int>(r)}].push_back(c->instance);
        const auto& groups = layout.groups(c->family);
        if (c->group_index < 0 || c->group_index >= static_cast<int>(groups.size()) ||
            layout.group_index_of(c->family, static_cast<int>(r)) != c->group_index) {
          report("{} names {} group {}, which does not hold rank {}", where(r, op), family_key(c->family),
                 c->group_index, r);
        }
      }
    }
    for (const auto& [instance, members] : issues) {
      const auto& [r0, i0] = members.front();
      const auto& first =
          std::get<CollectiveOp>(s_.ranks[static_cast<std::size_t>(r0)][static_cast<std::size_t>(i0)].body);
      const auto& group = layout.groups(first.family)[static_cast<std::size_t>(
          std::clamp(first.group_index, 0, static_cast<int>(layout.groups(first.family).size()) - 1))];
      if (members.size() != group.ranks.size()) {
        report("collective instance {} ({} on {} group {}) is issued {} times, but the group has {} ranks", instance,
               to_string(first.kind), family_key(first.family), first.group_index, members.size(), group.ranks.size());
        continue;
      }
      std::vector<const CollectiveOp*> by_position(group.ranks.size(), nullptr);
      for (const auto& [r, i] : members) {
        const auto& op = s_.ranks[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)];
        const auto& c = std::get<CollectiveOp>(op.body);
        if (c.kind != first.kind || c.family != first.family || c.group_index != first.group_index ||
            c.dtype != first.dtype || c.group_size != first.group_size ||
            (c.kind != CollectiveKind::kAllToAll && c.bytes != first.bytes)) {
          report("{} disagrees with rank {} on collective instance {} (kind, group, dtype or bytes)",
                 where(static_cast<std::size_t>(r), op), r0, instance);
        }
        const auto pos = std::find(group.ranks.begin(), group.ranks.end(), r) - group.ranks.begin();
        if (pos < static_cast<std::ptrdiff_t>(group.ranks.size())) by_position[static_cast<std::size_t>(pos)] = &c;
      }
      if (first.group_size != static_cast<int>(group.ranks.size())) {
        report("collective instance {} says group size {}, the layout's {} group has {}", instance, first.group_size,
               family_key(first.family), group.ranks.size());
      }
      if (first.kind == CollectiveKind::kAllToAll) check_all_to_all(instance, by_position);
    }
    // Same order on every member of a group.
    std::map<std::pair<int, int>, const std::vector<std::int64_t>*> reference;
    for (const auto& [key, instances] : order) {
      const auto [family, group, rank] = key;
      auto& ref = reference[{family, group}];
      if (ref == nullptr) {
        ref = &instances;
      } else if (*ref != instances) {
        report("rank {} issues the collectives of {} group {} in a different order than the group's first rank", rank,
               family_key(static_cast<GroupFamily>(family)), group);
      }
    }
  }

  void check_all_to_all(std::int64_t instance, const std::vector<const CollectiveOp*>& by_position) {
    const auto n = by_position.size();
    for (std::size_t i = 0; i < n; ++i) {
      const auto* c = by_position[i];
      if (c == nullptr || c->send_bytes.size() != n || c->recv_bytes.size() != n) {
        report("all-to-all instance {}: position {} does not list send and recv bytes for all {} peers", instance, i,
               n);
        return;
      }
      const auto total = std::accumulate(c->send_bytes.begin(), c->send_bytes.end(), std::int64_t{0});
      if (total != c->bytes)
        report("all-to-all instance {}: position {} sends {} bytes in all but says {}", instance, i, total, c->bytes);
    }
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        if (by_position[i]->send_bytes[j] != by_position[j]->recv_bytes[i]) {
          report("all-to-all instance {}: position {} sends {} bytes to {}, which expects {}", instance, i,
                 by_position[i]->send_bytes[j], j, by_position[j]->recv_bytes[i]);
        }
      }
    }
  }

  void check_p2p() {
    // (src, dst, match) -> (send op, recv op)
    std::map<std::tuple<int, int, std::int64_t>, std::pair<const Op*, const Op*>> pairs;
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      for (const auto& op : s_.ranks[r]) {
        const auto* p = std::get_if<P2POp>(&op.body);
        if (p == nullptr) continue;
        if (p->peer < 0 || p->peer >= static_cast<int>(s_.ranks.size()) || p->peer == static_cast<int>(r)) {
          report("{} names peer {}, not another rank of the world", where(r, op), p->peer);
          continue;
        }
        const auto key = p->is_send ? std::make_tuple(static_cast<int>(r), p->peer, p->match)
                                    : std::make_tuple(p->peer, static_cast<int>(r), p->match);
        auto& slot = pairs[key];
        auto& side = p->is_send ? slot.first : slot.second;
        if (side != nullptr)
          report("{} repeats match {} of an earlier {}", where(r, op), p->match, p->is_send ? "send" : "recv");
        side = &op;
      }
    }
    for (const auto& [key, pair] : pairs) {
      const auto [src, dst, match] = key;
      if (pair.first == nullptr || pair.second == nullptr) {
        report("the {} from rank {} to rank {} (match {}) has no {}", pair.first ? "send" : "recv", src, dst, match,
               pair.first ? "recv" : "send");
      } else if (std::get<P2POp>(pair.first->body).bytes != std::get<P2POp>(pair.second->body).bytes) {
        report("rank {} sends {} bytes to rank {} (match {}), which receives {}", src,
               std::get<P2POp>(pair.first->body).bytes, dst, match, std::get<P2POp>(pair.second->body).bytes);
      }
    }
  }

  // Kahn's algorithm over the step: an op runs once its stream predecessor and its deps are done. The ops of one
  // collective instance, a send with its recv, and the P2P ops one rank posts as one group complete together, so
  // each such set is one node (union-find).
  void check_progress() {
    std::vector<std::size_t> base(s_.ranks.size() + 1, 0);
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) base[r + 1] = base[r] + s_.ranks[r].size();
    std::vector<std::size_t> parent(base.back());
    std::iota(parent.begin(), parent.end(), std::size_t{0});
    const auto find = [&](std::size_t x) {
      while (parent[x] != x) x = parent[x] = parent[parent[x]];
      return x;
    };
    const auto unite = [&](std::size_t a, std::size_t b) { parent[find(a)] = find(b); };
    std::map<std::int64_t, std::size_t> collective_first;
    std::map<std::tuple<int, int, std::int64_t>, std::size_t> p2p_first;
    std::map<std::pair<std::size_t, std::int64_t>, std::size_t> group_first;  // (rank, p2p group) -> op
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      for (const auto& op : s_.ranks[r]) {
        const auto id = base[r] + static_cast<std::size_t>(op.index);
        if (const auto* c = std::get_if<CollectiveOp>(&op.body)) {
          const auto [it, fresh] = collective_first.try_emplace(c->instance, id);
          if (!fresh) unite(id, it->second);
        } else if (const auto* p = std::get_if<P2POp>(&op.body)) {
          const auto key = p->is_send ? std::make_tuple(static_cast<int>(r), p->peer, p->match)
                                      : std::make_tuple(p->peer, static_cast<int>(r), p->match);
          const auto [it, fresh] = p2p_first.try_emplace(key, id);
          if (!fresh) unite(id, it->second);
          if (p->group >= 0) {
            const auto [g, first] = group_first.try_emplace({r, p->group}, id);
            if (!first) unite(id, g->second);
          }
        }
      }
    }
    const auto total = parent.size();
    std::vector<std::vector<std::size_t>> successors(total);
    std::vector<std::size_t> indegree(total, 0);
    const auto edge = [&](std::size_t from, std::size_t to) {
      from = find(from);
      to = find(to);
      if (from == to) return;
      successors[from].push_back(to);
      ++indegree[to];
    };
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      std::array<int, 2> last_on_stream = {-1, -1};
      for (const auto& op : s_.ranks[r]) {
        const auto me = base[r] + static_cast<std::size_t>(op.index);
        auto& last = last_on_stream[static_cast<std::size_t>(op.stream)];
        if (last >= 0) edge(base[r] + static_cast<std::size_t>(last), me);
        last = op.index;
        for (const int d : op.deps) edge(base[r] + static_cast<std::size_t>(d), me);
      }
    }
    std::vector<std::size_t> ready;
    std::size_t nodes = 0;
    for (std::size_t n = 0; n < total; ++n) {
      if (find(n) != n) continue;
      ++nodes;
      if (indegree[n] == 0) ready.push_back(n);
    }
    std::size_t done = 0;
    while (!ready.empty()) {
      const auto n = ready.back();
      ready.pop_back();
      ++done;
      for (const auto next : successors[n]) {
        if (--indegree[next] == 0) ready.push_back(next);
      }
    }
    if (done == nodes) return;
    for (std::size_t r = 0; r < s_.ranks.size(); ++r) {
      for (const auto& op : s_.ranks[r]) {
        if (indegree[find(base[r] + static_cast<std::size_t>(op.index))] > 0) {
          report("deadlock: {} of {} steps can never start; the first stuck op is {}", nodes - done, nodes,
                 where(r, op));
          return;
        }
      }
    }
  }

  const Schedule& s_;
  std::vector<std::string> out_;
};

}  // namespace

std::vector<std::string> schedule_violations(const Schedule& schedule) {
  return ScheduleChecker(schedule).run();
}

}  // namespace paratwin
