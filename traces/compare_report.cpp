#include "traces/compare_report.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "traces/collective_bandwidth.hpp"

namespace paratwin {
namespace {

using Json = nlohmann::json;

std::string percent(double fraction) {
  return std::isfinite(fraction) ? fmt::format("{:+.2f}%", fraction * 100) : std::string("n/a");
}
std::string unsigned_percent(double fraction) {
  return std::isfinite(fraction) ? fmt::format("{:.2f}%", fraction * 100) : std::string("n/a");
}
std::string share(const std::optional<double>& value) {
  return value ? percent(*value) : std::string("-");
}
std::string us(double s) {
  return fmt::format("{:.3f}", s * 1e6);
}
std::string gb_per_s(double bytes_per_s) {
  return fmt::format("{:.2f}", bytes_per_s * 1e-9);
}

void append_group_table(std::string& text, const std::string& title, const std::vector<GroupError>& groups,
                        bool with_share) {
  text += fmt::format("\n{}\n", title);
  text += fmt::format("  {:<34} {:>6} {:>14} {:>14} {:>9} {:>9} {:>9} {:>9}{}\n", "", "ops", "predicted us",
                      "measured us", "median", "med|e|", "p90|e|", "MAPE", with_share ? "  share of e2e diff" : "");
  for (const GroupError& g : groups) {
    text +=
        fmt::format("  {:<34} {:>6} {:>14} {:>14} {:>9} {:>9} {:>9} {:>9}{}\n", g.key, g.stats.count, us(g.predicted_s),
                    us(g.measured_s), percent(g.stats.median), unsigned_percent(g.stats.median_abs),
                    unsigned_percent(g.stats.p90_abs), unsigned_percent(g.stats.mape),
                    with_share ? fmt::format("  {:>18}", share(g.share_of_difference)) : "");
  }
}

void append_bandwidth_table(std::string& text, const Comparison& c) {
  // Median busbw per (kind, group size, size bucket); the per-call rows are in CSV/JSON.
  using Key = std::tuple<std::string, int, double>;  // kind, n, lower bound of the bucket
  std::map<Key, std::vector<const CollectiveComparison*>> groups;
  for (const CollectiveComparison& row : c.collectives) {
    const double lower = row.size_bytes < 1 ? 0 : std::pow(4.0, std::floor(std::log(row.size_bytes) / std::log(4.0)));
    groups[{row.kind, row.group_size, lower}].push_back(&row);
  }
  text += "\nCollective bandwidth (nccl-tests algbw/busbw, GB/s; median over calls)\n";
  text += fmt::format("  {:<16} {:>4} {:<22} {:>6} {:>11} {:>11} {:>11} {:>11}\n", "kind", "n", "size (S)", "calls",
                      "pred algbw", "meas algbw", "pred busbw", "meas busbw");
  for (const auto& [key, rows] : groups) {
    std::vector<double> pa, ma, pb, mb;
    for (const auto* r : rows) {
      pa.push_back(r->predicted_algbw);
      ma.push_back(r->measured_algbw);
      pb.push_back(r->predicted_busbw);
      mb.push_back(r->measured_busbw);
    }
    text += fmt::format("  {:<16} {:>4} {:<22} {:>6} {:>11} {:>11} {:>11} {:>11}\n", std::get<0>(key), std::get<1>(key),
                        size_bucket_label(rows.front()->size_bytes), rows.size(), gb_per_s(quantile(pa, 0.5)),
                        gb_per_s(quantile(ma, 0.5)), gb_per_s(quantile(pb, 0.5)), gb_per_s(quantile(mb, 0.5)));
  }
}

std::string step_label(const PathStep& s) {
  return fmt::format("rank {} op {} '{}' ({})", s.rank, s.op, s.name, s.kind);
}

}  // namespace

std::string comparison_text(const Comparison& c) {
  std::string text;
  text += fmt::format("predicted: {} ({}), calibration '{}'\n", c.predicted_meta.backend, c.predicted_meta.cluster,
                      c.predicted_meta.calibration);
  text += fmt::format("measured:  {} ({})\n", c.measured_meta.backend, c.measured_meta.cluster);
  text += fmt::format("schedule:  {} ({}, {})\n", c.measured_meta.schedule_hash, c.measured_meta.model,
                      c.measured_meta.layout);
  text += fmt::format("\nEnd to end: predicted {} us, measured {} us, relative error {}\n", us(c.predicted_e2e_s),
                      us(c.measured_e2e_s), percent(c.e2e_relative_error));
  text += fmt::format("All ops ({}): median {}, median |e| {}, p90 |e| {}, MAPE {}\n", c.all_ops.count,
                      percent(c.all_ops.median), unsigned_percent(c.all_ops.median_abs),
                      unsigned_percent(c.all_ops.p90_abs), unsigned_percent(c.all_ops.mape));
  append_group_table(text, "Per kind (busy time; share: of the end-to-end difference, on the measured critical path)",
                     c.by_kind, true);
  if (c.unexplained_share)
    text += fmt::format("  {:<34} share not explained by op times (gaps, other paths): {}\n", "",
                        percent(*c.unexplained_share));
  append_group_table(text, "Per collective kind and size bucket (nccl-tests S)", c.by_collective_size, false);
  append_group_table(text, "Per layer", c.by_layer, false);
  append_bandwidth_table(text, c);
  text +=
      fmt::format("\nCritical path: predicted {} steps ending on rank {}, measured {} steps ending on rank {}\n",
                  c.predicted_path.size(), c.predicted_critical_rank, c.measured_path.size(), c.measured_critical_rank);
  if (!c.divergence) {
    text += "  the two critical paths are identical\n";
  } else {
    const std::size_t i = *c.divergence;
    text += fmt::format("  first divergence at step {}: predicted {}, measured {}\n", i,
                        i < c.predicted_path.size() ? step_label(c.predicted_path[i]) : "(path ended)",
                        i < c.measured_path.size() ? step_label(c.measured_path[i]) : "(path ended)");
  }
  return text;
}

namespace {

std::string csv_field(const std::string& value) {
  if (value.find_first_of(",\"\n") == std::string::npos) return value;
  std::string quoted = "\"";
  for (const char ch : value) {
    if (ch == '"') quoted += '"';
    quoted += ch;
  }
  return quoted + '"';
}
std::string csv_number(double value) {
  return std::isfinite(value) ? fmt::format("{:.17g}", value) : std::string();
}

constexpr const char* kCsvHeader =
    "section,key,rank,op,name,kind,group_size,size_bytes,count,predicted_s,measured_s,relative_error,"
    "median_relative_error,median_abs_relative_error,p90_abs_relative_error,mape,share_of_e2e_difference,"
    "predicted_algbw_bytes_per_s,measured_algbw_bytes_per_s,predicted_busbw_bytes_per_s,measured_busbw_bytes_per_s,"
    "start_s,end_s\n";

struct CsvRow {
  std::string section, key, name, kind;
  std::string rank, op, group_size, size_bytes, count;
  double predicted_s = NAN, measured_s = NAN, relative_error = NAN;
  double median = NAN, median_abs = NAN, p90_abs = NAN, mape = NAN, share = NAN;
  double pred_algbw = NAN, meas_algbw = NAN, pred_busbw = NAN, meas_busbw = NAN, start_s = NAN, end_s = NAN;
  [[nodiscard]] std::string text() const {
    return fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", section,
                       csv_field(key), rank, op, csv_field(name), csv_field(kind), group_size, size_bytes, count,
                       csv_number(predicted_s), csv_number(measured_s), csv_number(relative_error), csv_number(median),
                       csv_number(median_abs), csv_number(p90_abs), csv_number(mape), csv_number(share),
                       csv_number(pred_algbw), csv_number(meas_algbw), csv_number(pred_busbw), csv_number(meas_busbw),
                       csv_number(start_s), csv_number(end_s));
  }
};

CsvRow group_row(const std::string& section, const GroupError& g) {
  CsvRow row;
  row.section = section;
  row.key = g.key;
  row.count = std::to_string(g.stats.count);
  row.predicted_s = g.predicted_s;
  row.measured_s = g.measured_s;
  row.median = g.stats.median;
  row.median_abs = g.stats.median_abs;
  row.p90_abs = g.stats.p90_abs;
  row.mape = g.stats.mape;
  if (g.share_of_difference) row.share = *g.share_of_difference;
  return row;
}

// An "op" or "collective" row with the columns an OpComparison and a CollectiveComparison share: which call it is,
// its size and its busy time in each trace.
template <class Call>
CsvRow call_row(const char* section, const Call& call) {
  CsvRow row;
  row.section = section;
  row.rank = std::to_string(call.rank);
  row.op = std::to_string(call.op);
  row.name = call.name;
  row.kind = call.kind;
  row.group_size = std::to_string(call.group_size);
  row.size_bytes = csv_number(call.size_bytes);
  row.predicted_s = call.predicted_s;
  row.measured_s = call.measured_s;
  return row;
}

Json stats_json(const ErrorStats& s) {
  return {
      {"count", s.count}, {"median", s.median}, {"median_abs", s.median_abs}, {"p90_abs", s.p90_abs}, {"mape", s.mape}};
}
Json optional_json(const std::optional<double>& value) {
  return value ? Json(*value) : Json(nullptr);
}
Json finite_json(double value) {
  return std::isfinite(value) ? Json(value) : Json(nullptr);
}
Json groups_json(const std::vector<GroupError>& groups) {
  Json out = Json::array();
  for (const GroupError& g : groups) {
    out.push_back({{"key", g.key},
                   {"stats", stats_json(g.stats)},
                   {"predicted_s", g.predicted_s},
                   {"measured_s", g.measured_s},
                   {"share_of_e2e_difference", optional_json(g.share_of_difference)}});
  }
  return out;
}
Json path_json(const std::vector<PathStep>& path) {
  Json out = Json::array();
  for (const PathStep& s : path) {
    out.push_back({{"rank", s.rank},
                   {"op", s.op},
                   {"name", s.name},
                   {"kind", s.kind},
                   {"start_s", s.start_s},
                   {"end_s", s.end_s}});
  }
  return out;
}
Json meta_json(const TraceMeta& m) {
  return {{"backend", m.backend}, {"schedule_hash", m.schedule_hash}, {"model", m.model}, {"layout", m.layout},
          {"cluster", m.cluster}, {"calibration", m.calibration}};
}

}  // namespace

std::string comparison_csv(const Comparison& c) {
  std::string text = kCsvHeader;
  CsvRow e2e;
  e2e.section = "e2e";
  e2e.key = "end_to_end";
  e2e.predicted_s = c.predicted_e2e_s;
  e2e.measured_s = c.measured_e2e_s;
  e2e.relative_error = c.e2e_relative_error;
  if (c.unexplained_share) e2e.share = *c.unexplained_share;  // what the kinds leave unexplained
  text += e2e.text();
  for (const GroupError& g : c.by_kind) text += group_row("kind", g).text();
  for (const GroupError& g : c.by_collective_size) text += group_row("collective_size", g).text();
  for (const GroupError& g : c.by_layer) text += group_row("layer", g).text();
  for (const OpComparison& op : c.ops) {
    CsvRow row = call_row("op", op);
    row.relative_error = op.relative_error;
    text += row.text();
  }
  for (const CollectiveComparison& col : c.collectives) {
    CsvRow row = call_row("collective", col);
    row.key = col.group;
    row.relative_error = relative_error(col.predicted_s, col.measured_s);
    row.pred_algbw = col.predicted_algbw;
    row.meas_algbw = col.measured_algbw;
    row.pred_busbw = col.predicted_busbw;
    row.meas_busbw = col.measured_busbw;
    text += row.text();
  }
  const auto path_rows = [&](const char* section, const std::vector<PathStep>& path) {
    for (std::size_t i = 0; i < path.size(); ++i) {
      CsvRow row;
      row.section = section;
      row.key = std::to_string(i);
      row.rank = std::to_string(path[i].rank);
      row.op = std::to_string(path[i].op);
      row.name = path[i].name;
      row.kind = path[i].kind;
      row.start_s = path[i].start_s;
      row.end_s = path[i].end_s;
      text += row.text();
    }
  };
  path_rows("path_predicted", c.predicted_path);
  path_rows("path_measured", c.measured_path);
  return text;
}

std::string comparison_json(const Comparison& c) {
  Json ops = Json::array();
  for (const OpComparison& op : c.ops) {
    ops.push_back({{"rank", op.rank},
                   {"op", op.op},
                   {"name", op.name},
                   {"kind", op.kind},
                   {"stream", op.stream},
                   {"layer", op.layer},
                   {"group_size", op.group_size},
                   {"size_bytes", op.size_bytes},
                   {"predicted_s", op.predicted_s},
                   {"measured_s", op.measured_s},
                   {"relative_error", finite_json(op.relative_error)}});
  }
  Json collectives = Json::array();
  for (const CollectiveComparison& col : c.collectives) {
    collectives.push_back({{"rank", col.rank},
                           {"op", col.op},
                           {"name", col.name},
                           {"kind", col.kind},
                           {"group", col.group},
                           {"group_size", col.group_size},
                           {"size_bytes", col.size_bytes},
                           {"predicted_s", col.predicted_s},
                           {"measured_s", col.measured_s},
                           {"predicted_algbw_bytes_per_s", col.predicted_algbw},
                           {"measured_algbw_bytes_per_s", col.measured_algbw},
                           {"predicted_busbw_bytes_per_s", col.predicted_busbw},
                           {"measured_busbw_bytes_per_s", col.measured_busbw}});
  }
  Json root = {{"predicted", meta_json(c.predicted_meta)},
               {"measured", meta_json(c.measured_meta)},
               {"end_to_end",
                {{"predicted_s", c.predicted_e2e_s},
                 {"measured_s", c.measured_e2e_s},
                 {"relative_error", finite_json(c.e2e_relative_error)},
                 {"unexplained_share", optional_json(c.unexplained_share)}}},
               {"all_ops", stats_json(c.all_ops)},
               {"by_kind", groups_json(c.by_kind)},
               {"by_collective_size", groups_json(c.by_collective_size)},
               {"by_layer", groups_json(c.by_layer)},
               {"ops", std::move(ops)},
               {"collectives", std::move(collectives)},
               {"critical_path",
                {{"predicted_rank", c.predicted_critical_rank},
                 {"measured_rank", c.measured_critical_rank},
                 {"predicted", path_json(c.predicted_path)},
                 {"measured", path_json(c.measured_path)},
                 {"divergence", c.divergence ? Json(*c.divergence) : Json(nullptr)}}}};
  std::string text = root.dump(1);
  text.push_back('\n');
  return text;
}

}  // namespace paratwin
