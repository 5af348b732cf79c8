#pragma once
/// The one trace schema both backends write: Chrome trace event JSON (opens in Perfetto and chrome://tracing).
///
/// File layout: {"traceEvents": [...], "displayTimeUnit": "ns", "metadata": {...}} with
///  - one process per node (pid = node), one thread per (rank, stream) (tid = 2·rank + stream), named by "M" events;
///  - one complete event ("ph": "X") per op, ts/dur in microseconds (Chrome's unit), with "args" holding the exact
///    start/end in seconds and the op's identity and cost: rank, op (index), name, stream, layer, kind, group, bytes,
///    flops. Times in `Event` are seconds from the start of the step.
/// The format, field by field, is docs/trace-format.md.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paratwin {

/// Facts about how a trace was made (written under "metadata").
struct TraceMeta {
  std::string backend;        ///< "sim" or "cuda"
  std::string schedule_hash;  ///< hash of the schedule's canonical JSON: equal hashes = same schedule
  std::string model;
  std::string layout;                           ///< SGLang flags of the layout
  std::string cluster;                          ///< cluster name, nodes × GPUs
  std::string calibration;                      ///< calibration file used, "" for datasheet numbers
  std::map<std::string, std::string> versions;  ///< software versions (simgrid, cuda, nccl, paratwin)
  std::map<std::string, std::string> extra;     ///< anything else worth keeping
  friend bool operator==(const TraceMeta&, const TraceMeta&) = default;
};

/// One executed op.
struct Event {
  int rank = 0;
  int node = 0;
  int op = 0;          ///< op index within the rank (schedule identity)
  std::string name;    ///< op name ("L3.attn.kv_all_gather")
  std::string stream;  ///< "compute" or "comm"
  int layer = -1;
  std::string kind;    ///< compute kind or collective kind ("gemm", "all_gather", "send", ...)
  std::string group;   ///< "attn_cp[2]" for collectives, "" otherwise
  int group_size = 0;  ///< ranks in the group (collectives), 2 for p2p
  double start_s = 0, end_s = 0;
  std::int64_t bytes = 0;  ///< collective bytes (NCCL count × sizeof) or p2p bytes; compute: HBM bytes
  double flops = 0;
  // Optional, compute events only: what the compute model needs to read its efficiency curves (docs/sim.md §4), so
  // that `paratwin calibrate` can fit them. Absent from older traces and from foreign ones.
  double size = 0;      ///< the size the kind's efficiency curve is read at (m, kv_tokens, ...); 0: not recorded
  std::string dtype;    ///< "bf16", "fp8", ...; "" : not recorded
  bool causal = false;  ///< attention-like kinds with a causal mask
  friend bool operator==(const Event&, const Event&) = default;
};

struct Trace {
  TraceMeta meta;
  std::vector<Event> events;  ///< sorted by (rank, op)
  /// A trace from another tool in the same event format (e.g. a PyTorch profiler export): its "X" events carry no
  /// paratwin args, so ranks are its pids, ops are numbered by start time, and it can be viewed but not matched op
  /// by op (`compare` and `calibrate` refuse it). `meta` is empty except `meta.backend` = "foreign".
  bool foreign = false;
  friend bool operator==(const Trace&, const Trace&) = default;
};

/// Writes `trace` as Chrome trace JSON. Deterministic: the same trace gives byte-identical text.
[[nodiscard]] std::string write_chrome_trace(const Trace& trace);
/// Writes to `path` atomically (temporary file + rename), so a failure leaves nothing half-written.
void write_chrome_trace_file(const Trace& trace, const std::string& path);
/// Reads a trace. A paratwin trace (its "metadata" names a backend or a schedule hash, or an "X" event carries an
/// "op" arg) is read strictly: a missing or mistyped field is a paratwin::Error naming the event and the field.
/// Anything else with "X" events is read as a foreign trace (Trace::foreign). Extra fields are ignored.
[[nodiscard]] Trace read_chrome_trace(const std::string& json_text, const std::string& source);
[[nodiscard]] Trace read_chrome_trace_file(const std::string& path);

}  // namespace paratwin
