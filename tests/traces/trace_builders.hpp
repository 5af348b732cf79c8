#pragma once
// Small hand-built traces for the compare and calibrate tests.

#include <string>
#include <vector>

#include "traces/trace.hpp"

namespace paratwin::test {

inline Event make_event(int rank, int op, std::string name, std::string kind, double start_s, double end_s) {
  Event e;
  e.rank = rank;
  e.op = op;
  e.name = std::move(name);
  e.kind = std::move(kind);
  e.stream = "compute";
  e.layer = 0;
  e.start_s = start_s;
  e.end_s = end_s;
  return e;
}

inline Event make_collective(int rank, int op, std::string name, std::string kind, int group_size, std::int64_t bytes,
                             double start_s, double end_s) {
  Event e = make_event(rank, op, std::move(name), std::move(kind), start_s, end_s);
  e.stream = "comm";
  e.group = "attn_cp[0]";
  e.group_size = group_size;
  e.bytes = bytes;
  return e;
}

inline TraceMeta make_meta(std::string backend) {
  TraceMeta meta;
  meta.backend = std::move(backend);
  meta.schedule_hash = "hash-1";
  meta.model = "test";
  meta.layout = "--tp-size 1 --attn-cp-size 2";
  meta.cluster = "h200-sxm 1x2";
  return meta;
}

/// Two ranks. rank 0: gemm A [0, a0), all_gather C, rms_norm D after C. rank 1: gemm B [0, b1), C.
/// C starts on each rank when its gemm ends and lasts `c` after the later arrival.
inline Trace two_rank_trace(double a0, double b1, double c, double d, std::string backend = "sim") {
  Trace t;
  t.meta = make_meta(std::move(backend));
  const double c_end = std::max(a0, b1) + c;
  t.events.push_back(make_event(0, 0, "L0.gemm", "gemm", 0, a0));
  t.events.push_back(make_collective(0, 1, "L0.kv_all_gather", "all_gather", 2, 1 << 20, a0, c_end));
  t.events.push_back(make_event(0, 2, "L0.norm", "rms_norm", c_end, c_end + d));
  t.events.push_back(make_event(1, 0, "L0.gemm", "gemm", 0, b1));
  t.events.push_back(make_collective(1, 1, "L0.kv_all_gather", "all_gather", 2, 1 << 20, b1, c_end));
  t.events.push_back(make_event(1, 2, "L0.norm", "rms_norm", c_end, c_end + d));
  return t;
}

}  // namespace paratwin::test
