#include "traces/compare.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "topology/error.hpp"
#include "traces/collective_bandwidth.hpp"
#include "traces/critical_path.hpp"
#include "traces/op_instances.hpp"

namespace paratwin {
namespace {

using OpKey = std::pair<int, int>;  // (rank, op)
constexpr const char* kOutsideLayers = "outside layers";

std::map<OpKey, std::size_t> index_by_op(const Trace& trace, const std::string& source) {
  std::map<OpKey, std::size_t> index;
  for (std::size_t i = 0; i < trace.events.size(); ++i) {
    const Event& e = trace.events[i];
    if (!index.try_emplace({e.rank, e.op}, i).second) {
      fail("trace {}: rank {} op {} ('{}') appears twice: a trace holds one event per op", source, e.rank, e.op,
           e.name);
    }
  }
  return index;
}

void check_comparable(const Trace& trace, const std::string& source) {
  if (trace.foreign) {
    fail(
        "trace {} is not a paratwin trace (no paratwin args on its events): it can be viewed but not compared op "
        "by op",
        source);
  }
  if (trace.events.empty()) fail("trace {} has no events: nothing to compare", source);
}

// Refuses traces of different schedules, naming the first difference.
void check_same_schedule(const Trace& predicted, const Trace& measured, const std::map<OpKey, std::size_t>& p_index,
                         const std::map<OpKey, std::size_t>& m_index, const std::string& p_source,
                         const std::string& m_source) {
  if (predicted.meta.schedule_hash != measured.meta.schedule_hash) {
    fail("traces {} and {} are of different schedules: schedule_hash '{}' vs '{}'", p_source, m_source,
         predicted.meta.schedule_hash, measured.meta.schedule_hash);
  }
  auto p = p_index.begin();
  auto m = m_index.begin();
  for (; p != p_index.end() && m != m_index.end(); ++p, ++m) {
    if (p->first != m->first) {
      const bool missing_in_measured = p->first < m->first;
      const auto& [rank, op] = missing_in_measured ? p->first : m->first;
      const Event& e = missing_in_measured ? predicted.events[p->second] : measured.events[m->second];
      fail("traces {} and {} have different ops: rank {} op {} ('{}') is in {} but not in {}", p_source, m_source, rank,
           op, e.name, missing_in_measured ? p_source : m_source, missing_in_measured ? m_source : p_source);
    }
    const Event& a = predicted.events[p->second];
    const Event& b = measured.events[m->second];
    if (a.name != b.name || a.kind != b.kind) {
      fail("traces {} and {} have different ops: rank {} op {} is '{}' ({}) in {} but '{}' ({}) in {}", p_source,
           m_source, a.rank, a.op, a.name, a.kind, p_source, b.name, b.kind, m_source);
    }
  }
  if (p != p_index.end() || m != m_index.end()) {
    const bool extra_in_predicted = p != p_index.end();
    const Event& e = extra_in_predicted ? predicted.events[p->second] : measured.events[m->second];
    fail("traces {} and {} have different ops: rank {} op {} ('{}') is in {} but not in {}", p_source, m_source, e.rank,
         e.op, e.name, extra_in_predicted ? p_source : m_source, extra_in_predicted ? m_source : p_source);
  }
}

double size_of(const Event& e) {
  return is_communication_kind(e.kind) ? nccl_tests_size_bytes(e) : static_cast<double>(e.bytes);
}

// Groups ops by `key_of` (ops for which it returns "" are left out) and summarises their errors.
template <typename KeyOf>
std::vector<GroupError> group_errors(const std::vector<OpComparison>& ops, KeyOf key_of) {
  std::map<std::string, std::vector<const OpComparison*>> groups;
  for (const OpComparison& op : ops) {
    const std::string key = key_of(op);
    if (!key.empty()) groups[key].push_back(&op);
  }
  std::vector<GroupError> out;
  for (const auto& [key, members] : groups) {
    GroupError group;
    group.key = key;
    std::vector<double> errors;
    for (const OpComparison* op : members) {
      group.predicted_s += op->predicted_s;
      group.measured_s += op->measured_s;
      if (std::isfinite(op->relative_error)) errors.push_back(op->relative_error);
    }
    group.stats = error_stats(errors);
    out.push_back(std::move(group));
  }
  return out;
}

std::vector<PathStep> path_steps(const Trace& trace, const CriticalPath& path) {
  std::vector<PathStep> out;
  out.reserve(path.steps.size());
  for (const std::size_t i : path.steps) {
    const Event& e = trace.events[i];
    out.push_back({e.rank, e.op, e.name, e.kind, e.start_s, e.end_s});
  }
  return out;
}

}  // namespace

std::string size_bucket_label(double bytes) {
  if (bytes < 1) return "0 B";
  int exponent = 0;  // bucket [4^exponent, 4^(exponent+1))
  while (std::pow(4.0, exponent + 1) <= bytes) ++exponent;
  const auto unit = [](double value) {
    constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (value >= 1024 && u < 4) {
      value /= 1024;
      ++u;
    }
    return fmt::format("{:g} {}", value, kUnits[u]);
  };
  return fmt::format("[{}, {})", unit(std::pow(4.0, exponent)), unit(std::pow(4.0, exponent + 1)));
}

Comparison compare_traces(const Trace& predicted, const Trace& measured, const std::string& predicted_source,
                          const std::string& measured_source) {
  check_comparable(predicted, predicted_source);
  check_comparable(measured, measured_source);
  const auto p_index = index_by_op(predicted, predicted_source);
  const auto m_index = index_by_op(measured, measured_source);
  check_same_schedule(predicted, measured, p_index, m_index, predicted_source, measured_source);

  Comparison out;
  out.predicted_meta = predicted.meta;
  out.measured_meta = measured.meta;
  const OpInstances p_instances = find_op_instances(predicted);
  const OpInstances m_instances = find_op_instances(measured);
  const CriticalPath p_path = find_critical_path(predicted, p_instances);
  const CriticalPath m_path = find_critical_path(measured, m_instances);
  out.predicted_e2e_s = p_path.end_s - p_path.start_s;
  out.measured_e2e_s = m_path.end_s - m_path.start_s;
  out.e2e_relative_error = relative_error(out.predicted_e2e_s, out.measured_e2e_s);
  out.predicted_critical_rank = p_path.last_rank;
  out.measured_critical_rank = m_path.last_rank;

  // Per op.
  std::vector<double> all_errors;
  for (const auto& [key, m] : m_index) {
    const std::size_t p = p_index.at(key);
    const Event& e = measured.events[m];
    OpComparison op;
    op.rank = e.rank;
    op.op = e.op;
    op.layer = e.layer;
    op.group_size = e.group_size;
    op.name = e.name;
    op.kind = e.kind;
    op.stream = e.stream;
    op.size_bytes = size_of(e);
    op.predicted_s = p_instances.busy_s(predicted, p);
    op.measured_s = m_instances.busy_s(measured, m);
    // A zero measured time has no relative error; such ops count in sums but not in error statistics.
    op.relative_error =
        op.measured_s > 0 ? relative_error(op.predicted_s, op.measured_s) : std::numeric_limits<double>::quiet_NaN();
    if (std::isfinite(op.relative_error)) all_errors.push_back(op.relative_error);
    out.ops.push_back(std::move(op));
  }
  out.all_ops = error_stats(all_errors);
  out.by_kind = group_errors(out.ops, [](const OpComparison& op) { return op.kind; });
  out.by_collective_size = group_errors(out.ops, [](const OpComparison& op) {
    return is_communication_kind(op.kind) ? fmt::format("{} {}", op.kind, size_bucket_label(op.size_bytes))
                                          : std::string();
  });
  out.by_layer = group_errors(out.ops, [](const OpComparison& op) {
    return op.layer >= 0 ? fmt::format("layer {}", op.layer) : std::string(kOutsideLayers);
  });
  // Layers in numeric order, ops outside layers last.
  const auto layer_of = [](const GroupError& g) {
    return g.key == kOutsideLayers ? std::numeric_limits<int>::max() : std::stoi(g.key.substr(6));
  };
  std::stable_sort(out.by_layer.begin(), out.by_layer.end(),
                   [&](const GroupError& a, const GroupError& b) { return layer_of(a) < layer_of(b); });

  // Share of the end-to-end difference per kind, along the measured critical path.
  const double difference_s = out.predicted_e2e_s - out.measured_e2e_s;
  // Below 1e-9 of the end to end, a difference is rounding (e.g. of a calibration file's digits): no shares.
  if (std::abs(difference_s) > 1e-9 * out.measured_e2e_s) {
    std::map<std::string, double> kind_difference_s;
    for (const std::size_t m : m_path.steps) {
      const Event& e = measured.events[m];
      const std::size_t p = p_index.at({e.rank, e.op});
      kind_difference_s[e.kind] += p_instances.busy_s(predicted, p) - m_instances.busy_s(measured, m);
    }
    double explained = 0;
    for (GroupError& group : out.by_kind) {
      const auto it = kind_difference_s.find(group.key);
      group.share_of_difference = it == kind_difference_s.end() ? 0.0 : it->second / difference_s;
      explained += *group.share_of_difference;
    }
    out.unexplained_share = 1.0 - explained;
  }

  // nccl-tests bandwidths, one row per communication call, at its lowest-ranked member.
  for (const auto& members : m_instances.members) {
    const std::size_t m = *std::min_element(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
      return measured.events[a].rank < measured.events[b].rank;
    });
    const Event& e = measured.events[m];
    if (!is_communication_kind(e.kind)) continue;
    const std::size_t p = p_index.at({e.rank, e.op});
    CollectiveComparison row;
    row.rank = e.rank;
    row.op = e.op;
    row.group_size = e.group_size;
    row.name = e.name;
    row.kind = e.kind;
    row.group = e.group;
    row.size_bytes = nccl_tests_size_bytes(e);
    row.predicted_s = p_instances.busy_s(predicted, p);
    row.measured_s = m_instances.busy_s(measured, m);
    const Bandwidth predicted_bw = nccl_tests_bandwidth(predicted.events[p], row.predicted_s);
    const Bandwidth measured_bw = nccl_tests_bandwidth(e, row.measured_s);
    row.predicted_algbw = predicted_bw.algbw_bytes_per_s;
    row.predicted_busbw = predicted_bw.busbw_bytes_per_s;
    row.measured_algbw = measured_bw.algbw_bytes_per_s;
    row.measured_busbw = measured_bw.busbw_bytes_per_s;
    out.collectives.push_back(std::move(row));
  }

  out.predicted_path = path_steps(predicted, p_path);
  out.measured_path = path_steps(measured, m_path);
  const std::size_t common = std::min(out.predicted_path.size(), out.measured_path.size());
  for (std::size_t i = 0; i < common && !out.divergence; ++i) {
    const PathStep& a = out.predicted_path[i];
    const PathStep& b = out.measured_path[i];
    if (a.rank != b.rank || a.op != b.op) out.divergence = i;
  }
  if (!out.divergence && out.predicted_path.size() != out.measured_path.size()) out.divergence = common;
  return out;
}

}  // namespace paratwin
