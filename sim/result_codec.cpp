#include "sim/result_codec.hpp"

#include <cstring>
#include <type_traits>

#include "topology/error.hpp"

namespace paratwin::sim {
namespace {

class Writer {
 public:
  template <typename T>
  void pod(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&value);
    out_.append(p, sizeof(T));
  }
  void str(const std::string& text) {
    pod<std::uint64_t>(text.size());
    out_.append(text);
  }
  void map(const std::map<std::string, std::string>& m) {
    pod<std::uint64_t>(m.size());
    for (const auto& [k, v] : m) {
      str(k);
      str(v);
    }
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  template <typename T>
  T pod() {
    PARATWIN_ASSERT(pos_ + sizeof(T) <= in_.size(), "truncated simulation result at byte {}", pos_);
    T value;
    std::memcpy(&value, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string str() {
    const auto n = pod<std::uint64_t>();
    PARATWIN_ASSERT(pos_ + n <= in_.size(), "truncated simulation result at byte {}", pos_);
    std::string text = in_.substr(pos_, n);
    pos_ += n;
    return text;
  }
  std::map<std::string, std::string> map() {
    std::map<std::string, std::string> m;
    const auto n = pod<std::uint64_t>();
    for (std::uint64_t i = 0; i < n; ++i) {
      std::string k = str();
      m[k] = str();
    }
    return m;
  }
  [[nodiscard]] bool done() const { return pos_ == in_.size(); }

 private:
  const std::string& in_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string encode_result(const SimResult& result) {
  Writer w;
  const TraceMeta& m = result.trace.meta;
  for (const std::string* s : {&m.backend, &m.schedule_hash, &m.model, &m.layout, &m.cluster, &m.calibration})
    w.str(*s);
  w.map(m.versions);
  w.map(m.extra);
  w.pod<std::uint64_t>(result.trace.events.size());
  for (const Event& e : result.trace.events) {
    w.pod(e.rank);
    w.pod(e.node);
    w.pod(e.op);
    w.str(e.name);
    w.str(e.stream);
    w.pod(e.layer);
    w.str(e.kind);
    w.str(e.group);
    w.pod(e.group_size);
    w.pod(e.start_s);
    w.pod(e.end_s);
    w.pod(e.bytes);
    w.pod(e.flops);
    w.pod(e.size);
    w.str(e.dtype);
    w.pod(e.causal);
  }
  const SimSummary& s = result.summary;
  w.pod(s.phase);
  w.pod(s.end_to_end_s);
  w.pod(s.critical_rank);
  w.pod<std::uint64_t>(s.layers.size());
  for (const LayerBreakdown& l : s.layers) w.pod(l);
  w.pod<std::uint64_t>(s.kinds.size());
  for (const KindBreakdown& k : s.kinds) {
    w.str(k.kind);
    w.str(k.stream);
    w.pod(k.count);
    w.pod(k.critical_rank_s);
    w.pod(k.mean_rank_s);
  }
  w.pod<std::uint64_t>(s.exposed_comm_s.size());
  for (const double x : s.exposed_comm_s) w.pod(x);
  w.pod(s.critical_exposed_comm_s);
  w.pod(s.compute_utilization);
  w.pod<std::uint64_t>(s.busiest_links.size());
  for (const LinkUsage& l : s.busiest_links) {
    w.str(l.name);
    w.str(l.link_class);
    w.pod(l.bytes);
    w.pod(l.utilization);
  }
  w.pod<std::uint64_t>(s.algorithms.size());
  for (const auto& [k, v] : s.algorithms) {
    w.str(k);
    w.pod(v);
  }
  w.pod(s.simgrid_tasks);
  w.pod(s.reused_instances);
  w.pod(s.layers_reused);
  w.pod(s.wall_s);
  return w.take();
}

SimResult decode_result(const std::string& bytes) {
  Reader r(bytes);
  SimResult result;
  TraceMeta& m = result.trace.meta;
  for (std::string* s : {&m.backend, &m.schedule_hash, &m.model, &m.layout, &m.cluster, &m.calibration}) *s = r.str();
  m.versions = r.map();
  m.extra = r.map();
  const auto events = r.pod<std::uint64_t>();
  result.trace.events.resize(events);
  for (Event& e : result.trace.events) {
    e.rank = r.pod<int>();
    e.node = r.pod<int>();
    e.op = r.pod<int>();
    e.name = r.str();
    e.stream = r.str();
    e.layer = r.pod<int>();
    e.kind = r.str();
    e.group = r.str();
    e.group_size = r.pod<int>();
    e.start_s = r.pod<double>();
    e.end_s = r.pod<double>();
    e.bytes = r.pod<std::int64_t>();
    e.flops = r.pod<double>();
    e.size = r.pod<double>();
    e.dtype = r.str();
    e.causal = r.pod<bool>();
  }
  SimSummary& s = result.summary;
  s.phase = r.pod<Phase>();
  s.end_to_end_s = r.pod<double>();
  s.critical_rank = r.pod<int>();
  s.layers.resize(r.pod<std::uint64_t>());
  for (LayerBreakdown& l : s.layers) l = r.pod<LayerBreakdown>();
  s.kinds.resize(r.pod<std::uint64_t>());
  for (KindBreakdown& k : s.kinds) {
    k.kind = r.str();
    k.stream = r.str();
    k.count = r.pod<std::int64_t>();
    k.critical_rank_s = r.pod<double>();
    k.mean_rank_s = r.pod<double>();
  }
  s.exposed_comm_s.resize(r.pod<std::uint64_t>());
  for (double& x : s.exposed_comm_s) x = r.pod<double>();
  s.critical_exposed_comm_s = r.pod<double>();
  s.compute_utilization = r.pod<double>();
  s.busiest_links.resize(r.pod<std::uint64_t>());
  for (LinkUsage& l : s.busiest_links) {
    l.name = r.str();
    l.link_class = r.str();
    l.bytes = r.pod<double>();
    l.utilization = r.pod<double>();
  }
  const auto algorithms = r.pod<std::uint64_t>();
  for (std::uint64_t i = 0; i < algorithms; ++i) {
    std::string k = r.str();
    s.algorithms[k] = r.pod<int>();
  }
  s.simgrid_tasks = r.pod<std::int64_t>();
  s.reused_instances = r.pod<std::int64_t>();
  s.layers_reused = r.pod<int>();
  s.wall_s = r.pod<double>();
  PARATWIN_ASSERT(r.done(), "trailing bytes in a simulation result");
  return result;
}

}  // namespace paratwin::sim
